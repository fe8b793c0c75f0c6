// A libtorch C++ program over annbatch-rs batches: a softmax regression of an obs label on X,
// trained for a few epochs, plus the ownership checks of the C ABI (zero-copy tensors that
// outlive their batch, double free and next-after-end as defined errors, no leaked handles).
//
//   ./run cpp            (builds libannbatch.so and this file with g++, then runs it)
//   train COLLECTION [LABEL=cell_type] [EPOCHS=8]
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "annbatch.hpp"

#define REQUIRE(cond)                                                   \
  do {                                                                  \
    if (!(cond)) {                                                      \
      std::cerr << "check failed: " #cond " (line " << __LINE__ << ")\n"; \
      std::exit(1);                                                     \
    }                                                                   \
  } while (0)

static void ownership_checks(const std::string& path) {
  annbatch::Options o = annbatch_loader_options_default();
  o.batch_size = 32;
  o.chunk_size = 16;
  o.preload_nchunks = 2;
  annbatch::Loader loader(path, o);
  auto epoch = loader.epoch(0);
  at::Tensor kept;
  {
    auto batch = epoch.next();
    REQUIRE(batch.has_value());
    kept = batch->x();
    // Asked again: the same tensor (each array is handed over once, then cached).
    REQUIRE(batch->x().values().data_ptr() == kept.values().data_ptr());
    AnnbatchMatrix taken{};
    REQUIRE(annbatch_batch_x(batch->handle(), &taken) == ANNBATCH_STATUS_INVALID_ARGUMENT);
    // Zero-copy: the tensor is the memory the library handed over.
    auto next = epoch.next();
    REQUIRE(next.has_value());
    AnnbatchMatrix m{};
    REQUIRE(annbatch_batch_x(next->handle(), &m) == ANNBATCH_STATUS_OK);
    REQUIRE(m.format == ANNBATCH_FORMAT_CSR);
    // Through the pre-1.0 struct, which every libtorch's dlpack.h defines.
    DLManagedTensor* values = nullptr;
    REQUIRE(annbatch_dlpack_legacy(m.data, &values) == ANNBATCH_STATUS_OK);
    void* handed = values->dl_tensor.data;
    at::Tensor v = at::fromDLPack(values);
    REQUIRE(v.data_ptr() == handed);
    at::Tensor x = at::sparse_csr_tensor(annbatch::adopt(m.indptr), annbatch::adopt(m.indices), v,
                                         {static_cast<int64_t>(m.n_rows),
                                          static_cast<int64_t>(m.n_cols)},
                                         v.options().layout(at::kSparseCsr));
    REQUIRE(x.values().data_ptr() == handed && x.crow_indices().scalar_type() == at::kInt);
  }
  // The batches are freed; our tensor owns its memory and still reads.
  REQUIRE(kept.use_count() == 1);
  REQUIRE(kept.values().sum().item<float>() >= 0.0f);

  // The raw C API: a double free and next-after-end are defined errors, not UB.
  AnnbatchEpoch* raw_epoch = nullptr;
  REQUIRE(annbatch_loader_epoch(nullptr, 0, &raw_epoch) == ANNBATCH_STATUS_NULL_POINTER);
  AnnbatchLoader* raw = nullptr;
  REQUIRE(annbatch_loader_open("/no/such/collection.zarr", &o, &raw) == ANNBATCH_STATUS_IO_ERROR);
  REQUIRE(std::string(annbatch_last_error()).find("/no/such/collection.zarr") != std::string::npos);
  o.batch_size = 0;
  REQUIRE(annbatch_loader_open(path.c_str(), &o, &raw) == ANNBATCH_STATUS_INVALID_ARGUMENT);
  o.batch_size = 32;
  REQUIRE(annbatch_loader_open(path.c_str(), &o, &raw) == ANNBATCH_STATUS_OK);
  REQUIRE(annbatch_loader_epoch(raw, 1, &raw_epoch) == ANNBATCH_STATUS_OK);
  AnnbatchBatch* b = nullptr;
  REQUIRE(annbatch_epoch_next(raw_epoch, &b) == ANNBATCH_STATUS_OK);
  REQUIRE(annbatch_batch_free(b) == ANNBATCH_STATUS_OK);
  REQUIRE(annbatch_batch_free(b) == ANNBATCH_STATUS_INVALID_HANDLE);
  while (annbatch_epoch_next(raw_epoch, &b) == ANNBATCH_STATUS_OK) annbatch_batch_free(b);
  REQUIRE(annbatch_epoch_next(raw_epoch, &b) == ANNBATCH_STATUS_END && b == nullptr);
  REQUIRE(annbatch_epoch_next(raw_epoch, &b) == ANNBATCH_STATUS_END);
  REQUIRE(annbatch_epoch_free(raw_epoch) == ANNBATCH_STATUS_OK);
  REQUIRE(annbatch_loader_free(raw) == ANNBATCH_STATUS_OK);
  REQUIRE(annbatch_loader_free(raw) == ANNBATCH_STATUS_INVALID_HANDLE);
  std::cout << "ownership: DLPack tensors zero-copy, owned by the program, outliving their "
               "batch; double free and next-after-end are defined errors\n";
}

// Two .h5ad files with different genes, read as they are: their sorted union of genes.
static void h5ad_files_as_they_are() {
  const std::vector<std::string> files = {"tests/data/h5ad_direct/genes_a.h5ad",
                                          "tests/data/h5ad_direct/genes_b.h5ad"};
  annbatch::Options o = annbatch_loader_options_default();
  o.batch_size = 50;
  o.chunk_size = 10;
  o.preload_nchunks = 5;
  o.shuffle = true;
  annbatch::Loader loader(files, annbatch::Loader::Join::Outer, {}, o);
  REQUIRE(loader.n_obs() == 240 && loader.n_var() == 765);
  int64_t rows = 0;
  for (auto e = loader.epoch(0); auto batch = e.next();) {
    REQUIRE(batch->x().size(1) == 765);
    rows += batch->x().size(0);
  }
  REQUIRE(rows == 240);
  std::cout << "two .h5ad files with different genes: " << rows << " cells x " << loader.n_var()
            << " genes, read as they are\n";
}

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "tests/data/annbatch_collection.zarr";
  const std::string label = argc > 2 ? argv[2] : "cell_type";
  const int epochs = argc > 3 ? std::atoi(argv[3]) : 8;
  try {
    ownership_checks(path);
    h5ad_files_as_they_are();
    torch::manual_seed(0);
    annbatch::Options o = annbatch_loader_options_default();
    o.batch_size = 64;
    o.chunk_size = 16;
    o.preload_nchunks = 8;
    o.shuffle = true;
    o.seed = 1;
    annbatch::Loader loader(path, o, {label});
    // Classes: the largest code seen, plus one.
    int64_t n_classes = 0;
    for (auto e = loader.epoch(0); auto batch = e.next();) {
      n_classes = std::max(n_classes, batch->obs(label).max().item<int64_t>() + 1);
    }
    std::cout << path << ": " << loader.n_obs() << " cells x " << loader.n_var() << " genes, "
              << n_classes << " classes of " << label << ", " << loader.size()
              << " batches per epoch\n";
    torch::nn::Linear model(static_cast<int64_t>(loader.n_var()), n_classes);
    torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
    double first = 0.0, last = 0.0, accuracy = 0.0;
    for (int epoch = 0; epoch < epochs; ++epoch) {
      double loss_sum = 0.0;
      int64_t correct = 0, seen = 0;
      for (auto e = loader.epoch(epoch); auto batch = e.next();) {
        // log1p of counts, densified for the linear layer.
        at::Tensor x = batch->x().to_dense().log1p();
        at::Tensor y = batch->obs(label);
        at::Tensor logits = model->forward(x);
        at::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
        loss_sum += loss.item<double>() * y.size(0);
        correct += (logits.argmax(1) == y).sum().item<int64_t>();
        seen += y.size(0);
      }
      const double mean = loss_sum / static_cast<double>(seen);
      accuracy = static_cast<double>(correct) / static_cast<double>(seen);
      if (epoch == 0) first = mean;
      last = mean;
      std::printf("epoch %d: loss %.4f, train accuracy %.1f %%\n", epoch, mean, 100.0 * accuracy);
    }
    REQUIRE(last < first);
  } catch (const annbatch::Error& e) {
    std::cerr << "annbatch error " << e.status() << ": " << e.what() << "\n";
    return 1;
  }
  REQUIRE(annbatch_live_handles() == 0);
  std::cout << "no handle left alive\n";
  return 0;
}
