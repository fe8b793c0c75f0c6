// Reads the reference counts of a tensor's storage, which tch does not expose: the storage pool
// (pool.rs) hands a storage out again only once nothing but the pool refers to it.
#include <atomic>
#include <cstdint>

#include <ATen/core/TensorBase.h>

extern "C" {

// What `annbatch_storage_probe` reports of one tensor.
struct AnnbatchStorageProbe {
  uint64_t tensor_refs;   // strong references to the TensorImpl
  uint64_t storage_refs;  // strong references to the StorageImpl (one per tensor viewing it)
  uint64_t storage_weak;  // weak references to the StorageImpl, plus one while any strong exists
  void* data;             // the storage's memory
  uint64_t nbytes;        // and its size
};

// `tensor` is a tch `C_tensor` (an `at::Tensor*`). Returns 0, or -1 if torch threw (a tensor
// without storage, e.g. sparse). Never lets an exception cross into Rust.
int annbatch_storage_probe(const void* tensor, AnnbatchStorageProbe* out) noexcept {
  try {
    const auto& t = *static_cast<const at::TensorBase*>(tensor);
    const c10::Storage& storage = t.storage();
    out->tensor_refs = t.use_count();
    out->storage_refs = storage.use_count();
    // The temporary weak pointer counts itself: take it off.
    out->storage_weak = storage.getWeakStorageImpl().weak_use_count() - 1;
    out->data = storage.mutable_data();
    out->nbytes = storage.nbytes();
    // The counts were read relaxed; a count of one must also order the last owner's accesses
    // (released by its decrement) before the caller reuses the memory.
    std::atomic_thread_fence(std::memory_order_acquire);
    return 0;
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
