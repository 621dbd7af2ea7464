// The pointwise part of one step of rnnlab's fused GRU and LSTM, compiled: each function reads
// a step's rows once and writes every result, vectorised with ATen's Vectorized (whose exp and
// tanh are torch's own). The maths is pointwise.py's, line for line; compiled.py builds this
// file for the CPU capability torch runs with, and the tests hold it equal to pointwise.py.
//
// Every tensor is one step's rows, contiguous: (b, G*H) for gates, (b, H) for the rest, and
// biases (G*H,) or empty. Gates are in torch's order: GRU r, z, n; LSTM i, f, g, o.

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

void check(const std::vector<at::Tensor>& tensors, const at::Tensor& like) {
  for (const auto& t : tensors) {
    TORCH_CHECK(t.is_contiguous(), "rnnlab pointwise kernels take contiguous tensors");
    TORCH_CHECK(t.scalar_type() == like.scalar_type(), "rnnlab pointwise kernels: mixed dtypes");
    TORCH_CHECK(t.device().is_cpu(), "rnnlab pointwise kernels run on the CPU");
  }
}

// A bias argument is an empty tensor where the module has no bias.
template <typename T>
const T* bias_data(const at::Tensor& bias) {
  return bias.numel() ? bias.data_ptr<T>() : nullptr;
}

void gru_forward(at::Tensor gi, at::Tensor gh, at::Tensor bias, at::Tensor h_prev,
                 at::Tensor h) {
  check({gi, gh, bias, h_prev, h}, h);
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "gru_forward", [&] {
    gru_forward_rows<scalar_t>(gi.data_ptr<scalar_t>(), gh.data_ptr<scalar_t>(),
                               bias_data<scalar_t>(bias), h_prev.data_ptr<scalar_t>(),
                               h.data_ptr<scalar_t>(), h.size(0), h.size(1));
  });
}

void gru_backward(at::Tensor gi, at::Tensor gh, at::Tensor h_prev, at::Tensor dh,
                  at::Tensor carry_in, at::Tensor dgi, at::Tensor dgh, at::Tensor carry_out) {
  check({gi, gh, h_prev, dh, carry_in, dgi, dgh, carry_out}, dh);
  AT_DISPATCH_FLOATING_TYPES(dh.scalar_type(), "gru_backward", [&] {
    gru_backward_rows<scalar_t>(gi.data_ptr<scalar_t>(), gh.data_ptr<scalar_t>(),
                                h_prev.data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(),
                                carry_in.data_ptr<scalar_t>(), dgi.data_ptr<scalar_t>(),
                                dgh.data_ptr<scalar_t>(), carry_out.data_ptr<scalar_t>(),
                                dh.size(0), dh.size(1));
  });
}

void lstm_forward(at::Tensor gates, at::Tensor bias, at::Tensor c_prev, at::Tensor c,
                  at::Tensor tc, at::Tensor m) {
  check({gates, bias, c_prev, c, tc, m}, c);
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "lstm_forward", [&] {
    lstm_forward_rows<scalar_t>(gates.data_ptr<scalar_t>(), bias_data<scalar_t>(bias),
                                c_prev.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(),
                                tc.data_ptr<scalar_t>(), m.data_ptr<scalar_t>(), c.size(0),
                                c.size(1));
  });
}

void lstm_backward(at::Tensor gates, at::Tensor c_prev, at::Tensor tc, at::Tensor dm,
                   at::Tensor carry_in, at::Tensor dg, at::Tensor carry_out) {
  check({gates, c_prev, tc, dm, carry_in, dg, carry_out}, tc);
  AT_DISPATCH_FLOATING_TYPES(tc.scalar_type(), "lstm_backward", [&] {
    lstm_backward_rows<scalar_t>(gates.data_ptr<scalar_t>(), c_prev.data_ptr<scalar_t>(),
                                 tc.data_ptr<scalar_t>(), dm.data_ptr<scalar_t>(),
                                 carry_in.data_ptr<scalar_t>(), dg.data_ptr<scalar_t>(),
                                 carry_out.data_ptr<scalar_t>(), tc.size(0), tc.size(1));
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("gru_forward", &gru_forward);
  module.def("gru_backward", &gru_backward);
  module.def("lstm_forward", &lstm_forward);
  module.def("lstm_backward", &lstm_backward);
}
