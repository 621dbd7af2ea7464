// The serial loops of rnnlab's fused layers, compiled: loops.py's six functions (same
// arguments, same results). For the GRU and LSTM each step's pointwise part (pointwise.py's
// maths, line for line) is one pass over the step's rows, vectorised with ATen's Vectorized;
// the Elman cell's is torch's own activation. compiled.py builds this file for the CPU
// capability torch runs with; the tests hold it equal to loops.py.
//
// The step kernels (*_rows) read contiguous rows: (b, G*H) for gates, (b, H) for the rest,
// biases (G*H,) or none. Gates are in torch's order: GRU r, z, n; LSTM i, f, g, o.

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/extension.h>

#include <algorithm>

using at::vec::Vectorized;

namespace {

// torch's own sigmoid kernel: 1 / (1 + exp(-x)) with ATen's fast exp (for float a polynomial
// within 2 ulp, for double Sleef's).
template <typename T>
inline Vectorized<T> sigmoid(const Vectorized<T>& x) {
  return (Vectorized<T>(T(1)) + x.neg().exp_u20()).reciprocal();
}

// tanh x = 2 sigmoid(2x) - 1: one exp, as the sigmoid; its error is absolute (a few float
// epsilons near 0), where Sleef's tanh is relative and several times slower.
template <typename T>
inline Vectorized<T> tanh(const Vectorized<T>& x) {
  const Vectorized<T> two(T(2));
  return two * sigmoid(two * x) - Vectorized<T>(T(1));
}

// Runs body(row, column, count) over the rows and over each row's H columns in vectors of
// `count` lanes (the last one shorter), the rows shared among torch's threads.
template <typename T, typename F>
void for_each_vector(int64_t rows, int64_t H, const F& body) {
  const int64_t lanes = Vectorized<T>::size();
  at::parallel_for(0, rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(H, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t r = begin; r < end; ++r)
                       for (int64_t j = 0; j < H; j += lanes) body(r, j, std::min(lanes, H - j));
                   });
}

template <typename T>
void gru_forward_rows(T* gi, T* gh, const T* bias, const T* h_prev, T* h, int64_t rows,
                      int64_t H) {
  using V = Vectorized<T>;
  const V zero(T(0));
  for_each_vector<T>(rows, H, [&](int64_t row, int64_t j, int64_t n) {
    T* g = gi + row * 3 * H + j;
    T* k = gh + row * 3 * H + j;
    const int64_t at = row * H + j;
    // the biases, (b_ir + b_hr, b_iz + b_hz, b_in, b_hn), or none
    const auto b = [&](int64_t block) { return bias ? V::loadu(bias + block * H + j, n) : zero; };
    const V hn = V::loadu(k + 2 * H, n) + b(3);                          // W_hn h + b_hn
    const V r = sigmoid(V::loadu(g, n) + b(0) + V::loadu(k, n));          // reset gate
    const V z = sigmoid(V::loadu(g + H, n) + b(1) + V::loadu(k + H, n));  // update gate
    const V c = tanh(V::loadu(g + 2 * H, n) + b(2) + r * hn);             // candidate n
    r.store(g, n);
    z.store(g + H, n);
    c.store(g + 2 * H, n);
    hn.store(k + 2 * H, n);
    (c + z * (V::loadu(h_prev + at, n) - c)).store(h + at, n);  // h = n + z (h_prev - n)
  });
}

template <typename T>
void gru_backward_rows(const T* gi, const T* gh, const T* h_prev, const T* dh,
                       const T* carry_in, T* dgi, T* dgh, T* carry_out, int64_t rows,
                       int64_t H) {
  using V = Vectorized<T>;
  const V one(T(1));
  for_each_vector<T>(rows, H, [&](int64_t row, int64_t j, int64_t n) {
    const int64_t gate = row * 3 * H + j, at = row * H + j;
    const V r = V::loadu(gi + gate, n), z = V::loadu(gi + gate + H, n);
    const V c = V::loadu(gi + gate + 2 * H, n);
    const V d = V::loadu(dh + at, n) + V::loadu(carry_in + at, n);    // dh_t, whole
    const V dn = d * (one - z) * (one - c * c);                         // dn~
    const V dr = dn * V::loadu(gh + gate + 2 * H, n) * r * (one - r);  // dr~
    const V dz = d * (V::loadu(h_prev + at, n) - c) * z * (one - z);   // dz~
    dr.store(dgi + gate, n);
    dz.store(dgi + gate + H, n);
    dn.store(dgi + gate + 2 * H, n);
    dr.store(dgh + gate, n);
    dz.store(dgh + gate + H, n);
    (dn * r).store(dgh + gate + 2 * H, n);
    (d * z).store(carry_out + at, n);
  });
}

template <typename T>
void lstm_forward_rows(T* gates, const T* bias, const T* c_prev, T* c, T* tc, T* m,
                       int64_t rows, int64_t H) {
  using V = Vectorized<T>;
  for_each_vector<T>(rows, H, [&](int64_t row, int64_t j, int64_t n) {
    T* g = gates + row * 4 * H + j;
    const int64_t at = row * H + j;
    // the gate block's pre-activation: W_i x + W_h h (in `gates`) + b_i + b_h, or no bias
    const auto pre = [&](int64_t block) {
      const V raw = V::loadu(g + block * H, n);
      return bias ? raw + V::loadu(bias + block * H + j, n) : raw;
    };
    const V i = sigmoid(pre(0)), f = sigmoid(pre(1)), cand = tanh(pre(2)), o = sigmoid(pre(3));
    const V cell = f * V::loadu(c_prev + at, n) + i * cand;  // c = f c_prev + i g
    const V t = tanh(cell);
    i.store(g, n);
    f.store(g + H, n);
    cand.store(g + 2 * H, n);
    o.store(g + 3 * H, n);
    cell.store(c + at, n);
    t.store(tc + at, n);
    (o * t).store(m + at, n);  // m = o tanh(c)
  });
}

template <typename T>
void lstm_backward_rows(const T* gates, const T* c_prev, const T* tc, const T* dm,
                        const T* carry_in, T* dg, T* carry_out, int64_t rows, int64_t H) {
  using V = Vectorized<T>;
  const V one(T(1));
  for_each_vector<T>(rows, H, [&](int64_t row, int64_t j, int64_t n) {
    const T* g = gates + row * 4 * H + j;
    T* d = dg + row * 4 * H + j;
    const int64_t at = row * H + j;
    const V i = V::loadu(g, n), f = V::loadu(g + H, n), cand = V::loadu(g + 2 * H, n);
    const V o = V::loadu(g + 3 * H, n), t = V::loadu(tc + at, n), dmv = V::loadu(dm + at, n);
    const V dc = V::loadu(carry_in + at, n) + dmv * o * (one - t * t);  // dc_t
    (dc * cand * i * (one - i)).store(d, n);                             // di~
    (dc * V::loadu(c_prev + at, n) * f * (one - f)).store(d + H, n);    // df~
    (dc * i * (one - cand * cand)).store(d + 2 * H, n);                  // dg~
    (dmv * t * o * (one - o)).store(d + 3 * H, n);                       // do~
    (dc * f).store(carry_out + at, n);                                   // dc_t f_t
  });
}

// --- the loops: loops.py's, line for line ----------------------------------------------------

using at::Tensor;
using Steps = std::vector<Tensor>;

// A buffer (N, ...) cut into its steps' rows, as views.
Steps steps_of(const Tensor& buffer, const std::vector<int64_t>& batch_sizes) {
  return buffer.split_with_sizes(batch_sizes);
}

std::vector<int64_t> visit_order(int64_t steps, bool reverse) {
  std::vector<int64_t> order(steps);
  for (int64_t k = 0; k < steps; ++k) order[k] = reverse ? steps - 1 - k : k;
  return order;
}

// The (rows, F) state a step starts from: `prev`'s rows while they last, then `start`'s.
Tensor starting_state(const Tensor& prev, const Tensor& start, int64_t rows) {
  if (prev.size(0) >= rows) return prev.narrow(0, 0, rows);
  return at::cat({prev, start.narrow(0, prev.size(0), rows - prev.size(0))});
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.numel() ? t.data_ptr<T>() : nullptr;
}

void check(const std::vector<Tensor>& tensors, const Tensor& like) {
  for (const auto& t : tensors) {
    TORCH_CHECK(!t.numel() || t.is_contiguous(), "rnnlab's compiled loops take contiguous tensors");
    TORCH_CHECK(t.scalar_type() == like.scalar_type(), "rnnlab's compiled loops: mixed dtypes");
    TORCH_CHECK(t.device().is_cpu(), "rnnlab's compiled loops run on the CPU");
  }
}

void rnn_forward(Tensor z, Tensor w_rec, Tensor start, std::vector<int64_t> batch_sizes,
                 bool reverse, bool relu) {
  check({z, start}, z);
  Steps z_steps = steps_of(z, batch_sizes);
  Tensor prev = start;
  for (int64_t t : visit_order(batch_sizes.size(), reverse)) {
    z_steps[t].addmm_(starting_state(prev, start, batch_sizes[t]), w_rec);  // (b_t, H)
    if (relu) {
      at::relu_(z_steps[t]);
    } else {
      at::sigmoid_(z_steps[t]);
    }
    prev = z_steps[t];
  }
}

void rnn_backward(Tensor dz, Tensor slope, Tensor w_hh, std::vector<int64_t> batch_sizes,
                  bool reverse, Tensor grad_h_n, Tensor dh0) {
  check({dz, slope, grad_h_n, dh0}, dz);
  Steps dz_steps = steps_of(dz, batch_sizes), slopes = steps_of(slope, batch_sizes);
  const std::vector<int64_t> order = visit_order(batch_sizes.size(), reverse);
  int64_t after = -1, after_rows = 0;  // the step visited after this one, and its rows
  for (int64_t i = order.size() - 1; i >= 0; --i) {
    const int64_t t = order[i], rows = batch_sizes[t];
    Tensor d = dz_steps[t];  // (b_t, H)
    const int64_t fed = std::min(rows, after_rows);
    if (after >= 0 && fed == rows && rows == after_rows) {
      d.addmm_(dz_steps[after], w_hh);
    } else {
      if (fed) d.narrow(0, 0, fed).addmm_(dz_steps[after].narrow(0, 0, fed), w_hh);
      if (rows > fed) d.narrow(0, fed, rows - fed).add_(grad_h_n.narrow(0, fed, rows - fed));
    }
    d.mul_(slopes[t]);
    const int64_t prev_rows = i > 0 ? batch_sizes[order[i - 1]] : 0;
    if (rows > prev_rows) {  // rows that started from h0 at this step
      const int64_t n = rows - prev_rows;
      dh0.narrow(0, prev_rows, n).copy_(at::mm(d.narrow(0, prev_rows, n), w_hh));
    }
    after = t;
    after_rows = rows;
  }
}

void gru_forward(Tensor gi, Tensor gh, Tensor bias, Tensor w_hh_t, Tensor h0,
                 std::vector<int64_t> batch_sizes, bool reverse, Tensor out) {
  check({gi, gh, bias, h0, out}, out);
  Steps gi_steps = steps_of(gi, batch_sizes), gh_steps = steps_of(gh, batch_sizes);
  Steps h_steps = steps_of(out, batch_sizes);
  const int64_t H = out.size(1);
  Tensor prev = h0;
  for (int64_t t : visit_order(batch_sizes.size(), reverse)) {
    const Tensor h_prev = starting_state(prev, h0, batch_sizes[t]);  // (b_t, H)
    at::mm_out(gh_steps[t], h_prev, w_hh_t);   // (b_t, 3H)
    AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "gru_forward", [&] {
      gru_forward_rows<scalar_t>(ptr<scalar_t>(gi_steps[t]), ptr<scalar_t>(gh_steps[t]),
                                 ptr<scalar_t>(bias), ptr<scalar_t>(h_prev),
                                 ptr<scalar_t>(h_steps[t]), batch_sizes[t], H);
    });
    prev = h_steps[t];
  }
}

void gru_backward(Tensor gi, Tensor gh, Tensor out, Tensor h0, Tensor w_hh,
                  std::vector<int64_t> batch_sizes, bool reverse, Tensor dh, Tensor carry,
                  Tensor dgi, Tensor dgh, Tensor grad_h_n, Tensor dh0) {
  check({gi, gh, out, h0, dh, carry, dgi, dgh, grad_h_n, dh0}, dh);
  Steps gi_steps = steps_of(gi, batch_sizes), gh_steps = steps_of(gh, batch_sizes);
  Steps h_steps = steps_of(out, batch_sizes), dh_steps = steps_of(dh, batch_sizes);
  Steps dgi_steps = steps_of(dgi, batch_sizes), dgh_steps = steps_of(dgh, batch_sizes);
  Steps carry_steps = steps_of(carry, batch_sizes);
  const std::vector<int64_t> order = visit_order(batch_sizes.size(), reverse);
  const int64_t H = dh.size(1);
  int64_t after = -1, after_rows = 0;  // the step visited after this one, and its rows
  for (int64_t i = order.size() - 1; i >= 0; --i) {
    const int64_t t = order[i], rows = batch_sizes[t];
    Tensor d = dh_steps[t];  // (b_t, H)
    const int64_t fed = std::min(rows, after_rows);
    Tensor carry_in;
    if (after >= 0 && fed == rows && rows == after_rows) {
      d.addmm_(dgh_steps[after], w_hh);
      carry_in = carry_steps[after];
    } else {
      carry_in = at::zeros_like(d);
      if (fed) {
        d.narrow(0, 0, fed).addmm_(dgh_steps[after].narrow(0, 0, fed), w_hh);
        carry_in.narrow(0, 0, fed).copy_(carry_steps[after].narrow(0, 0, fed));
      }
      if (rows > fed) d.narrow(0, fed, rows - fed).add_(grad_h_n.narrow(0, fed, rows - fed));
    }
    const int64_t prev_rows = i > 0 ? batch_sizes[order[i - 1]] : 0;
    const Tensor h_prev = starting_state(i > 0 ? h_steps[order[i - 1]] : h0, h0, rows);
    AT_DISPATCH_FLOATING_TYPES(dh.scalar_type(), "gru_backward", [&] {
      gru_backward_rows<scalar_t>(
          ptr<scalar_t>(gi_steps[t]), ptr<scalar_t>(gh_steps[t]), ptr<scalar_t>(h_prev),
          ptr<scalar_t>(d), ptr<scalar_t>(carry_in), ptr<scalar_t>(dgi_steps[t]),
          ptr<scalar_t>(dgh_steps[t]), ptr<scalar_t>(carry_steps[t]), rows, H);
    });
    if (rows > prev_rows) {  // rows that started from h0 at this step
      const int64_t n = rows - prev_rows;
      dh0.narrow(0, prev_rows, n)
          .copy_(at::addmm(carry_steps[t].narrow(0, prev_rows, n),
                           dgh_steps[t].narrow(0, prev_rows, n), w_hh));
    }
    after = t;
    after_rows = rows;
  }
}

void lstm_forward(Tensor gates, Tensor bias, Tensor w_hh_t, Tensor w_hr_t, Tensor h0, Tensor c0,
                  std::vector<int64_t> batch_sizes, bool reverse, Tensor c, Tensor tc, Tensor m,
                  Tensor out) {
  check({gates, bias, h0, c0, c, tc, m, out}, c);
  Steps g_steps = steps_of(gates, batch_sizes), c_steps = steps_of(c, batch_sizes);
  Steps tc_steps = steps_of(tc, batch_sizes), m_steps = steps_of(m, batch_sizes);
  Steps h_steps = steps_of(out, batch_sizes);
  const int64_t H = c.size(1);
  Tensor prev_h = h0, prev_c = c0;
  for (int64_t t : visit_order(batch_sizes.size(), reverse)) {
    const int64_t rows = batch_sizes[t];
    const Tensor h_prev = starting_state(prev_h, h0, rows);  // (b_t, P)
    const Tensor c_prev = starting_state(prev_c, c0, rows);  // (b_t, H)
    Tensor g = g_steps[t];
    g.addmm_(h_prev, w_hh_t);  // (b_t, 4H)
    AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "lstm_forward", [&] {
      lstm_forward_rows<scalar_t>(ptr<scalar_t>(g), ptr<scalar_t>(bias), ptr<scalar_t>(c_prev),
                                  ptr<scalar_t>(c_steps[t]), ptr<scalar_t>(tc_steps[t]),
                                  ptr<scalar_t>(m_steps[t]), rows, H);
    });
    if (w_hr_t.numel()) at::mm_out(h_steps[t], m_steps[t], w_hr_t);
    prev_h = h_steps[t];
    prev_c = c_steps[t];
  }
}

void lstm_backward(Tensor gates, Tensor c, Tensor tc, Tensor out, Tensor h0, Tensor c0,
                   Tensor w_hh, Tensor w_hr, std::vector<int64_t> batch_sizes, bool reverse,
                   Tensor dh, Tensor dm, Tensor dg, Tensor carry, Tensor grad_h_n,
                   Tensor grad_c_n, Tensor dh0, Tensor dc0) {
  check({gates, c, tc, out, h0, c0, dh, dm, dg, carry, grad_h_n, grad_c_n, dh0, dc0}, dh);
  Steps g_steps = steps_of(gates, batch_sizes), c_steps = steps_of(c, batch_sizes);
  Steps tc_steps = steps_of(tc, batch_sizes), dh_steps = steps_of(dh, batch_sizes);
  Steps dm_steps = steps_of(dm, batch_sizes), dg_steps = steps_of(dg, batch_sizes);
  Steps carry_steps = steps_of(carry, batch_sizes);
  const std::vector<int64_t> order = visit_order(batch_sizes.size(), reverse);
  const int64_t H = c.size(1);
  int64_t after = -1, after_rows = 0;  // the step visited after this one, and its rows
  for (int64_t i = order.size() - 1; i >= 0; --i) {
    const int64_t t = order[i], rows = batch_sizes[t];
    Tensor d = dh_steps[t];  // (b_t, P)
    const int64_t fed = std::min(rows, after_rows);
    Tensor carry_in;
    if (after >= 0 && fed == rows && rows == after_rows) {
      d.addmm_(dg_steps[after], w_hh);
      carry_in = carry_steps[after];
    } else {
      if (fed) d.narrow(0, 0, fed).addmm_(dg_steps[after].narrow(0, 0, fed), w_hh);
      if (rows > fed) d.narrow(0, fed, rows - fed).add_(grad_h_n.narrow(0, fed, rows - fed));
      const Tensor ended = grad_c_n.narrow(0, fed, rows - fed);
      carry_in = fed ? at::cat({carry_steps[after].narrow(0, 0, fed), ended}) : ended.clone();
    }
    if (w_hr.numel()) at::mm_out(dm_steps[t], d, w_hr);
    const int64_t prev_rows = i > 0 ? batch_sizes[order[i - 1]] : 0;
    const Tensor c_prev = starting_state(i > 0 ? c_steps[order[i - 1]] : c0, c0, rows);
    AT_DISPATCH_FLOATING_TYPES(dh.scalar_type(), "lstm_backward", [&] {
      lstm_backward_rows<scalar_t>(ptr<scalar_t>(g_steps[t]), ptr<scalar_t>(c_prev),
                                   ptr<scalar_t>(tc_steps[t]), ptr<scalar_t>(dm_steps[t]),
                                   ptr<scalar_t>(carry_in), ptr<scalar_t>(dg_steps[t]),
                                   ptr<scalar_t>(carry_steps[t]), rows, H);
    });
    if (rows > prev_rows) {  // rows that started from (h0, c0) at this step
      const int64_t n = rows - prev_rows;
      dh0.narrow(0, prev_rows, n).copy_(at::mm(dg_steps[t].narrow(0, prev_rows, n), w_hh));
      dc0.narrow(0, prev_rows, n).copy_(carry_steps[t].narrow(0, prev_rows, n));
    }
    after = t;
    after_rows = rows;
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("rnn_forward", &rnn_forward);
  module.def("rnn_backward", &rnn_backward);
  module.def("gru_forward", &gru_forward);
  module.def("gru_backward", &gru_backward);
  module.def("lstm_forward", &lstm_forward);
  module.def("lstm_backward", &lstm_backward);
}
