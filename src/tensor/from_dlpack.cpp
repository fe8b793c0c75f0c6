// Makes an `at::Tensor` of a DLPack managed tensor, which tch does not offer: the loader's batch
// arrays (pooled host memory, `assemble/pooled.rs`) become tch tensors without a copy, and go
// back to the pool when torch releases them.
#include <atomic>
#include <memory>

#include <ATen/DLConvertor.h>

extern "C" {

// Takes ownership of `managed`: on success `*out` is a new `at::Tensor*` (a tch `C_tensor`,
// freed by tch's `at_free`) whose storage calls `managed`'s deleter when torch lets it go.
// Returns 0, or -1 if torch threw; `managed` has then been released. Never lets an exception
// cross into Rust.
int annbatch_tensor_from_dlpack(DLManagedTensorVersioned* managed, void** out) noexcept {
  // Released exactly once: by torch's storage, or here if torch threw before it took it.
  auto released = std::make_shared<std::atomic<bool>>(false);
  auto release = [managed, released](void*) {
    if (!released->exchange(true) && managed->deleter != nullptr) {
      managed->deleter(managed);
    }
  };
  try {
    *out = new at::Tensor(at::fromDLPackVersioned(managed, release));
    return 0;
  } catch (...) {
    release(nullptr);
    return -1;
  }
}

}  // extern "C"
