// annbatch-rs for libtorch C++: a header-only RAII wrapper over the C ABI (annbatch.h).
//
// Ownership: a Batch owns its C handle and frees it once (move-only). Its tensors are returned
// as at::Tensor copies of the ones the loader built: a copy holds a reference to the same
// memory (zero-copy), so it stays valid after the Batch is gone. Errors throw annbatch::Error
// with the library's message and status.
//
//   annbatch::Options options;            // annbatch's defaults
//   options.batch_size = 64;
//   annbatch::Loader loader("collection.zarr", options, {"cell_type"});
//   for (auto epoch = loader.epoch(0); auto batch = epoch.next();) {
//     at::Tensor x = batch->x();          // sparse CSR [rows, n_var]
//     at::Tensor y = batch->obs("cell_type");
//   }
//   // With {"counts"} as layer_keys / {"X_pca"} as obsm_keys: batch->layer("counts"),
//   // batch->obsm("X_pca"), the same rows as x().
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
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

/// A copy of a lent `at::Tensor*`: shares its memory, holds its own reference.
inline at::Tensor adopt(void* lent) { return *static_cast<at::Tensor*>(lent); }

class Batch {
 public:
  explicit Batch(AnnbatchBatch* handle) : handle_(handle) {}
  Batch(Batch&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Batch& operator=(Batch&& other) noexcept {
    reset();
    handle_ = std::exchange(other.handle_, nullptr);
    return *this;
  }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  ~Batch() { reset(); }

  /// X: sparse CSR (int32 indices, float32 values) or dense float32, [rows, n_var].
  at::Tensor x() const { return lent(annbatch_batch_x); }
  /// Global row ids (int64); the loader needs return_index.
  at::Tensor index() const { return lent(annbatch_batch_index); }
  /// An obs column the loader was asked for: int64 codes or float32 values.
  at::Tensor obs(const std::string& key) const { return named(annbatch_batch_obs, key); }
  /// A layer the loader was asked for: the rows of X, [rows, n_var], sparse CSR or dense.
  at::Tensor layer(const std::string& key) const { return named(annbatch_batch_layer, key); }
  /// An obsm entry the loader was asked for: the rows of X, dense float32 [rows, d].
  at::Tensor obsm(const std::string& key) const { return named(annbatch_batch_obsm, key); }
  std::uint64_t n_rows() const {
    std::uint64_t n = 0;
    check(annbatch_batch_n_rows(handle_, &n));
    return n;
  }
  /// The C handle (still owned by this Batch).
  const AnnbatchBatch* handle() const noexcept { return handle_; }

 private:
  at::Tensor lent(AnnbatchStatus (*get)(const AnnbatchBatch*, void**)) const {
    void* t = nullptr;
    check(get(handle_, &t));
    return adopt(t);
  }
  at::Tensor named(AnnbatchStatus (*get)(const AnnbatchBatch*, const char*, void**),
                   const std::string& key) const {
    void* t = nullptr;
    check(get(handle_, key.c_str(), &t));
    return adopt(t);
  }
  void reset() noexcept {
    if (handle_ != nullptr) {
      annbatch_batch_free(std::exchange(handle_, nullptr));
    }
  }
  AnnbatchBatch* handle_;
};

class Epoch {
 public:
  explicit Epoch(AnnbatchEpoch* handle) : handle_(handle) {}
  Epoch(Epoch&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Epoch(const Epoch&) = delete;
  Epoch& operator=(const Epoch&) = delete;
  ~Epoch() {
    if (handle_ != nullptr) annbatch_epoch_free(handle_);
  }
  /// The next batch, or nullopt at the end of the epoch.
  std::optional<Batch> next() {
    AnnbatchBatch* b = nullptr;
    if (check(annbatch_epoch_next(handle_, &b)) == ANNBATCH_STATUS_END) return std::nullopt;
    return Batch(b);
  }

 private:
  AnnbatchEpoch* handle_;
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
    return Epoch(e);
  }

 private:
  std::uint64_t value(AnnbatchStatus (*get)(const AnnbatchLoader*, std::uint64_t*)) const {
    std::uint64_t v = 0;
    check(get(handle_, &v));
    return v;
  }
  AnnbatchLoader* handle_ = nullptr;
};

}  // namespace annbatch
