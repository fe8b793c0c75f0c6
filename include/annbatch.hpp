// annbatch-rs for libtorch C++: a header-only RAII wrapper over the C ABI (annbatch.h),
// compiled against the libtorch of the program that includes it (any libtorch 2.x: the library
// links none, and hands batch arrays over as DLPack tensors).
//
// Ownership: a Batch owns its C handle and frees it once (move-only). Each tensor is made from
// the arrays the library hands over (at::fromDLPackVersioned, or at::fromDLPack on a libtorch
// without DLPack 1.0), zero-copy: it owns that memory, returns it to the loader's pool when its
// last reference goes, and stays valid after the Batch, the Epoch and the Loader are gone.
// Calling x() again returns the same tensor. Errors throw annbatch::Error with the library's
// message and status.
//
//   annbatch::Options options;            // annbatch's defaults
//   options.batch_size = 64;
//   options.device = 0;                   // optional: batches placed on cuda:0 by libtorch
//   annbatch::Loader loader("collection.zarr", options, {"cell_type"});
//   for (auto epoch = loader.epoch(0); auto batch = epoch.next();) {
//     at::Tensor x = batch->x();          // sparse CSR [rows, n_var]
//     at::Tensor y = batch->obs("cell_type");
//   }
//   // With {"counts"} as layer_keys / {"X_pca"} as obsm_keys: batch->layer("counts"),
//   // batch->obsm("X_pca"), the same rows as x().
#pragma once

#include <ATen/ATen.h>
#include <ATen/DLConvertor.h>

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "annbatch.h"

namespace annbatch {

using Options = AnnbatchLoaderOptions;

/// A failed call: the status and the library's message.
class Error : public std::runtime_error {
 public:
  Error(AnnbatchStatus status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  AnnbatchStatus status() const noexcept { return status_; }

 private:
  AnnbatchStatus status_;
};

/// Throws unless `status` is OK (or END, which callers handle).
inline AnnbatchStatus check(AnnbatchStatus status) {
  if (status != ANNBATCH_STATUS_OK && status != ANNBATCH_STATUS_END) {
    throw Error(status, annbatch_last_error());
  }
  return status;
}

/// A tensor owning a handed-over array (zero-copy).
inline at::Tensor adopt(DLManagedTensorVersioned* array) {
#if defined(DLPACK_MAJOR_VERSION) && DLPACK_MAJOR_VERSION >= 1
  return at::fromDLPackVersioned(array);
#else
  DLManagedTensor* legacy = nullptr;
  check(annbatch_dlpack_legacy(array, &legacy));
  return at::fromDLPack(legacy);
#endif
}

/// A handed-over matrix as a tensor: sparse CSR (int32 indices) or dense.
inline at::Tensor adopt(const AnnbatchMatrix& m) {
  at::Tensor data = adopt(m.data);
  const std::vector<int64_t> size{static_cast<int64_t>(m.n_rows), static_cast<int64_t>(m.n_cols)};
  if (m.format == ANNBATCH_FORMAT_CSR) {
    at::Tensor crow = adopt(m.indptr), col = adopt(m.indices);
    return at::sparse_csr_tensor(crow, col, data, size, data.options().layout(at::kSparseCsr));
  }
  return data;  // its own shape: [rows, cols], or [rows, d1, d2, ...] for an N-d obsm entry
}

class Batch {
 public:
  /// `device`: -1 (CPU) or N (cuda:N), where the tensors are placed.
  Batch(AnnbatchBatch* handle, int device) : handle_(handle), device_(device) {}
  Batch(Batch&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)),
        device_(other.device_),
        taken_(std::move(other.taken_)) {}
  Batch& operator=(Batch&& other) noexcept {
    reset();
    handle_ = std::exchange(other.handle_, nullptr);
    device_ = other.device_;
    taken_ = std::move(other.taken_);
    return *this;
  }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  ~Batch() { reset(); }

  /// X: sparse CSR (int32 indices, float32 values) or dense float32, [rows, n_var].
  at::Tensor x() const {
    return once("X", [&] {
      AnnbatchMatrix m{};
      check(annbatch_batch_x(handle_, &m));
      return adopt(m);
    });
  }
  /// Global row ids (int64); the loader needs return_index.
  at::Tensor index() const {
    return once("index", [&] {
      DLManagedTensorVersioned* t = nullptr;
      check(annbatch_batch_index(handle_, &t));
      return adopt(t);
    });
  }
  /// An obs column the loader was asked for: int64 codes, or its values (int64 for integer
  /// columns, float64 for float64 and nullable integer ones, float32 otherwise).
  at::Tensor obs(const std::string& key) const {
    return once("obs/" + key, [&] {
      DLManagedTensorVersioned* t = nullptr;
      check(annbatch_batch_obs(handle_, key.c_str(), &t));
      return adopt(t);
    });
  }
  /// A layer the loader was asked for: the rows of X, [rows, n_var], sparse CSR or dense.
  at::Tensor layer(const std::string& key) const {
    return once("layers/" + key, [&] {
      AnnbatchMatrix m{};
      check(annbatch_batch_layer(handle_, key.c_str(), &m));
      return adopt(m);
    });
  }
  /// An obsm entry the loader was asked for: the rows of X, dense float32 [rows, d].
  at::Tensor obsm(const std::string& key) const {
    return once("obsm/" + key, [&] {
      AnnbatchMatrix m{};
      check(annbatch_batch_obsm(handle_, key.c_str(), &m));
      return adopt(m);
    });
  }
  std::uint64_t n_rows() const {
    std::uint64_t n = 0;
    check(annbatch_batch_n_rows(handle_, &n));
    return n;
  }
  /// The C handle (still owned by this Batch).
  const AnnbatchBatch* handle() const noexcept { return handle_; }

 private:
  /// The tensor `name`, made by `make` on first use (each array is handed over once), then
  /// placed on the batch's device.
  template <typename Make>
  at::Tensor once(const std::string& name, Make make) const {
    auto found = taken_.find(name);
    if (found != taken_.end()) return found->second;
    at::Tensor t = make();
    if (device_ >= 0) t = t.to(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_)));
    taken_.emplace(name, t);
    return t;
  }
  void reset() noexcept {
    if (handle_ != nullptr) {
      annbatch_batch_free(std::exchange(handle_, nullptr));
    }
  }
  AnnbatchBatch* handle_;
  int device_;
  mutable std::map<std::string, at::Tensor> taken_;
};

class Epoch {
 public:
  Epoch(AnnbatchEpoch* handle, int device) : handle_(handle), device_(device) {}
  Epoch(Epoch&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)), device_(other.device_) {}
  Epoch(const Epoch&) = delete;
  Epoch& operator=(const Epoch&) = delete;
  ~Epoch() {
    if (handle_ != nullptr) annbatch_epoch_free(handle_);
  }
  /// The next batch, or nullopt at the end of the epoch.
  std::optional<Batch> next() {
    AnnbatchBatch* b = nullptr;
    if (check(annbatch_epoch_next(handle_, &b)) == ANNBATCH_STATUS_END) return std::nullopt;
    return Batch(b, device_);
  }

 private:
  AnnbatchEpoch* handle_;
  int device_;
};

class Loader {
 public:
  /// Opens `path`; each batch carries the `obs_keys` columns and the `layer_keys` /
  /// `obsm_keys` matrices beside X.
  Loader(const std::string& path, Options options = annbatch_loader_options_default(),
         const std::vector<std::string>& obs_keys = {},
         const std::vector<std::string>& layer_keys = {},
         const std::vector<std::string>& obsm_keys = {}) {
    auto pointers = [](const std::vector<std::string>& v) {
      std::vector<const char*> p;
      for (const auto& k : v) p.push_back(k.c_str());
      return p;
    };
    auto obs = pointers(obs_keys), layers = pointers(layer_keys), obsm = pointers(obsm_keys);
    options.obs_keys = obs.empty() ? nullptr : obs.data();
    options.n_obs_keys = obs.size();
    options.layer_keys = layers.empty() ? nullptr : layers.data();
    options.n_layer_keys = layers.size();
    options.obsm_keys = obsm.empty() ? nullptr : obsm.data();
    options.n_obsm_keys = obsm.size();
    check(annbatch_loader_open(path.c_str(), &options, &handle_));
    device_ = options.device;
  }
  /// How the genes of several inputs become one `var` space (`annbatch_loader_open_files`).
  enum class Join : std::uint32_t { Same = 0, Outer = 1, Subset = 2 };
  /// Opens `.h5ad` files, AnnData stores and collections as one, as they are (no conversion),
  /// their genes joined by `join` (`Subset`: the union cut to `var_subset`).
  Loader(const std::vector<std::string>& paths, Join join,
         const std::vector<std::string>& var_subset = {},
         Options options = annbatch_loader_options_default()) {
    std::vector<const char*> files, subset;
    for (const auto& p : paths) files.push_back(p.c_str());
    for (const auto& g : var_subset) subset.push_back(g.c_str());
    check(annbatch_loader_open_files(files.data(), files.size(),
                                     static_cast<std::uint32_t>(join),
                                     subset.empty() ? nullptr : subset.data(), subset.size(),
                                     &options, &handle_));
    device_ = options.device;
  }
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  ~Loader() {
    if (handle_ != nullptr) annbatch_loader_free(handle_);
  }
  std::uint64_t n_obs() const { return value(annbatch_loader_n_obs); }
  std::uint64_t n_var() const { return value(annbatch_loader_n_var); }
  /// Batches per epoch.
  std::uint64_t size() const { return value(annbatch_loader_len); }
  /// Starts epoch `epoch` (it seeds the shuffle); batches are prefetched in the background.
  Epoch epoch(std::uint64_t epoch) const {
    AnnbatchEpoch* e = nullptr;
    check(annbatch_loader_epoch(handle_, epoch, &e));
    return Epoch(e, device_);
  }

 private:
  std::uint64_t value(AnnbatchStatus (*get)(const AnnbatchLoader*, std::uint64_t*)) const {
    std::uint64_t v = 0;
    check(get(handle_, &v));
    return v;
  }
  AnnbatchLoader* handle_ = nullptr;
  int device_ = -1;
};

}  // namespace annbatch
