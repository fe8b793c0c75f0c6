// torch.Tensor <-> at::Tensor for the Python module, without Python's headers.
//
// tch's `python-extension` glue includes torch/csrc headers, which pull in pybind11 and CPython's
// non-limited API: a module built with it only loads into the CPython that built it. Here the
// two directions use no Python API at all, so the module stays abi3:
// - to Python: libtorch_python's exported `THPVariable_Wrap(const at::TensorBase&)`, declared
//   by hand (`PyObject` is only ever a pointer here; the symbol's mangled name does not involve
//   it). It returns a new reference, or NULL with a Python error set.
// - from Python: a DLPack capsule (made by `torch.utils.dlpack.to_dlpack` on the Python side)
//   becomes an at::Tensor over the same memory through `at::fromDLPack`.
#include <ATen/DLConvertor.h>
#include <ATen/core/Tensor.h>

#include <exception>
#include <string>

struct _object;
using PyObject = _object;

PyObject* THPVariable_Wrap(const at::TensorBase& var);

namespace {
thread_local std::string last_error;

void remember(const std::exception& e) {
  last_error = e.what();
}
}  // namespace

extern "C" {

// A new reference to a torch.Tensor sharing `t`, or NULL (a Python error is set, or
// `annbatch_glue_error` says what C++ threw).
PyObject* annbatch_tensor_to_python(const at::Tensor* t) noexcept {
  last_error.clear();
  try {
    return THPVariable_Wrap(*t);
  } catch (const std::exception& e) {
    remember(e);
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return nullptr;
}

// A new at::Tensor owning `managed` (its deleter runs when the tensor's memory is freed), or
// NULL with `annbatch_glue_error` set; on NULL the caller still owns `managed`.
at::Tensor* annbatch_tensor_from_dlpack(DLManagedTensor* managed) noexcept {
  last_error.clear();
  try {
    return new at::Tensor(at::fromDLPack(managed));
  } catch (const std::exception& e) {
    remember(e);
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return nullptr;
}

// What the last failed call on this thread threw ("" if it set a Python error instead).
const char* annbatch_glue_error() noexcept {
  return last_error.c_str();
}
}
