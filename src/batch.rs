//! Host-side row buffers that reads fill and that are reused from read to read.
//!
//! Values are `float32` whatever the stored dtype (what models train on; integer counts are exact
//! up to 2^24). CSR batches use `int32` row pointers and column indices, the layout torch's
//! sparse CSR tensors take without conversion. The converter reads matrices that are not
//! float32 in the type that holds them exactly ([`RowValue`]): `int64` / `uint64` for integers,
//! `float64` for the rest.

/// A value type rows are read as: `f32` (batches), `f64`, `i64`, `u64` (conversion of other
/// dtypes, each exact for the stored values it is used for).
pub trait RowValue: Copy + Default + PartialEq + Send + Sync + 'static {
    /// Whether the value is zero, bit for bit (dropped when dense rows become sparse; a
    /// float `-0.0` is kept, so its sign survives).
    fn is_zero(self) -> bool;
    /// A float32 value in this type (in-memory float32 matrices read as another type).
    fn from_f32(v: f32) -> Self;
}

macro_rules! row_value {
    ($($t:ty),*) => {$(
        impl RowValue for $t {
            fn is_zero(self) -> bool {
                self.to_ne_bytes() == <$t>::default().to_ne_bytes()
            }
            fn from_f32(v: f32) -> Self {
                v as $t
            }
        }
    )*};
}
row_value!(f32, f64, i64, u64);

/// Rows of a CSR matrix: `indptr.len() == n_rows + 1`, `indptr[0] == 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct CsrBatch<V = f32> {
    /// Row pointers into `indices` / `data`.
    pub indptr: Vec<i32>,
    /// Column index of each stored value, in `0..n_var`.
    pub indices: Vec<i32>,
    /// Stored values.
    pub data: Vec<V>,
    /// Number of columns.
    pub n_var: u64,
}

impl<V: RowValue> CsrBatch<V> {
    /// An empty batch (zero rows) of `n_var` columns.
    pub fn new(n_var: u64) -> Self {
        Self {
            indptr: vec![0],
            indices: Vec::new(),
            data: Vec::new(),
            n_var,
        }
    }

    /// Removes every row, keeping the allocations.
    pub fn clear(&mut self) {
        self.indptr.clear();
        self.indptr.push(0);
        self.indices.clear();
        self.data.clear();
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// Column indices and values of row `i`, or `None` past the last row.
    pub fn row(&self, i: usize) -> Option<(&[i32], &[V])> {
        let start = usize::try_from(*self.indptr.get(i)?).ok()?;
        let end = usize::try_from(*self.indptr.get(i + 1)?).ok()?;
        Some((self.indices.get(start..end)?, self.data.get(start..end)?))
    }
}

/// Rows of a dense matrix, row-major: `data.len() == n_rows * row_width`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseBatch<V = f32> {
    /// Row-major values.
    pub data: Vec<V>,
    /// Elements per row (`n_var`, times any trailing dimensions).
    pub row_width: usize,
}

impl<V: RowValue> DenseBatch<V> {
    /// An empty batch with rows of `row_width` elements.
    pub fn new(row_width: usize) -> Self {
        Self {
            data: Vec::new(),
            row_width,
        }
    }

    /// Removes every row, keeping the allocation.
    pub fn clear(&mut self) {
        self.data.clear();
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.data.len().checked_div(self.row_width).unwrap_or(0)
    }

    /// Row `i`, or `None` past the last row.
    pub fn row(&self, i: usize) -> Option<&[V]> {
        self.data.get(i * self.row_width..(i + 1) * self.row_width)
    }
}

/// Rows of `X`, sparse or dense as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum XBatch<V = f32> {
    /// From a `csr_matrix` element.
    Csr(CsrBatch<V>),
    /// From a dense `array` element.
    Dense(DenseBatch<V>),
}

impl<V: RowValue> XBatch<V> {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        match self {
            Self::Csr(b) => b.n_rows(),
            Self::Dense(b) => b.n_rows(),
        }
    }

    /// Bytes its arrays hold (values, and indices and row pointers when sparse).
    pub fn bytes(&self) -> usize {
        let value = std::mem::size_of::<V>();
        match self {
            Self::Csr(b) => b.data.len() * value + (b.indices.len() + b.indptr.len()) * 4,
            Self::Dense(b) => b.data.len() * value,
        }
    }

    /// Whether the rows are sparse (CSR).
    pub fn is_sparse(&self) -> bool {
        matches!(self, Self::Csr(_))
    }

    /// Removes every row, keeping the allocations.
    pub fn clear(&mut self) {
        match self {
            Self::Csr(b) => b.clear(),
            Self::Dense(b) => b.clear(),
        }
    }
}

impl<V: RowValue> CsrBatch<V> {
    /// Replaces the contents with rows `rows` of `src`, in that order.
    pub fn gather(&mut self, src: &CsrBatch<V>, rows: &[usize]) {
        self.clear();
        self.n_var = src.n_var;
        self.indptr.reserve(rows.len());
        for &r in rows {
            let (a, b) = (src.indptr[r] as usize, src.indptr[r + 1] as usize);
            self.indices.extend_from_slice(&src.indices[a..b]);
            self.data.extend_from_slice(&src.data[a..b]);
            // Fits: a batch holds at most the fetch's values, whose count fits i32.
            self.indptr.push(self.data.len() as i32);
        }
    }
}

impl<V: RowValue> DenseBatch<V> {
    /// Replaces the contents with rows `rows` of `src`, in that order.
    pub fn gather(&mut self, src: &DenseBatch<V>, rows: &[usize]) {
        self.clear();
        self.row_width = src.row_width;
        self.data.reserve(rows.len() * src.row_width);
        for &r in rows {
            self.data
                .extend_from_slice(&src.data[r * src.row_width..(r + 1) * src.row_width]);
        }
    }
}

impl<V: RowValue> XBatch<V> {
    /// Replaces the contents with rows `rows` of `src` (of the same kind), in that order.
    pub fn gather(&mut self, src: &XBatch<V>, rows: &[usize]) {
        match (self, src) {
            (XBatch::Csr(dst), XBatch::Csr(src)) => dst.gather(src, rows),
            (XBatch::Dense(dst), XBatch::Dense(src)) => dst.gather(src, rows),
            (dst, src) => {
                *dst = src.empty_like();
                dst.gather(src, rows);
            }
        }
    }

    /// An empty batch of the same kind and width.
    pub fn empty_like(&self) -> XBatch<V> {
        match self {
            XBatch::Csr(b) => XBatch::Csr(CsrBatch::new(b.n_var)),
            XBatch::Dense(b) => XBatch::Dense(DenseBatch::new(b.row_width)),
        }
    }
}
