"""rnnlab.report: plots and summaries read from the files a training run wrote.

It sits below `rnnlab.train` and knows nothing of models or data: only metrics.jsonl records,
confusion matrices, and the numbers an experiment computed for its explain page.
"""

from rnnlab.report.explain_html import render_explain_page
from rnnlab.report.plots import plot_confusion, plot_curves
from rnnlab.report.summary import read_metrics, summarize, write_summary

__all__ = [
    "plot_confusion",
    "plot_curves",
    "read_metrics",
    "render_explain_page",
    "summarize",
    "write_summary",
]
