//! What a batch carries besides `X`: obs columns (loaded once for the whole collection) and
//! global row ids, cut per batch by [`Extras::parts`] (the one place they are extracted); the
//! layers / obsm matrices it names are read with `X` (`super::scatter`).

use std::sync::Arc;

use super::aligned::AlignedMatrix;
use super::memory::{filled, Element, Memory};
use super::parts::ObsPart;
use crate::error::Result;
use crate::store::Column;
use crate::zarr::Dtype;

/// One requested obs column, held for the whole collection.
#[derive(Debug, Clone, PartialEq)]
pub enum ObsSource {
    /// Category codes (`-1` = missing) and their names.
    Categorical {
        /// Per-row codes.
        codes: Vec<i32>,
        /// Category names.
        categories: Arc<Vec<String>>,
    },
    /// float32 values: float32 and float16 columns, booleans as 0 / 1 (missing values of
    /// nullable booleans are NaN).
    Numeric(Vec<f32>),
    /// float64 values: float64 columns; nullable integers (NaN = missing, exact up to 2^53);
    /// uint64 columns holding a value past `i64::MAX`.
    Float64(Vec<f64>),
    /// Integers of any width, exactly (int8 … int64, uint8 … uint32, uint64 within `i64`).
    Int64(Vec<i64>),
}

impl ObsSource {
    /// The batchable form of obs column `name`.
    ///
    /// # Errors
    /// None today: every column kind has a batchable form (strings are factorized). The
    /// `Result` is kept for kinds added later.
    pub fn from_column(_name: &str, column: Column) -> Result<Self> {
        let numeric = |v: Vec<f32>| Ok(Self::Numeric(v));
        match column {
            Column::Categorical {
                codes, categories, ..
            } => Ok(Self::Categorical {
                codes: codes.into_iter().map(|c| c as i32).collect(),
                categories: Arc::new(categories),
            }),
            Column::Float(v) => Ok(Self::Float64(v)),
            Column::Float32(v) => numeric(v),
            Column::Int { values, dtype } => {
                if dtype == Dtype::U64 && values.iter().any(|&v| v < 0) {
                    // uint64 values past i64::MAX: the nearest float64.
                    Ok(Self::Float64(
                        values.iter().map(|&v| v as u64 as f64).collect(),
                    ))
                } else {
                    Ok(Self::Int64(values))
                }
            }
            Column::Bool(v) => numeric(v.into_iter().map(|x| f32::from(u8::from(x))).collect()),
            Column::NullableInt {
                values,
                mask,
                dtype,
            } => Ok(Self::Float64(
                values
                    .iter()
                    .zip(&mask)
                    .map(|(&v, &m)| {
                        if m {
                            f64::NAN
                        } else {
                            Column::int_value(v, dtype) as f64
                        }
                    })
                    .collect(),
            )),
            Column::NullableBool { values, mask } => numeric(
                values
                    .iter()
                    .zip(&mask)
                    .map(|(&v, &m)| if m { f32::NAN } else { f32::from(u8::from(v)) })
                    .collect(),
            ),
            Column::String(values) => Ok(factorize(values.iter().map(Some))),
            Column::NullableString { values, mask } => Ok(factorize(
                values.iter().zip(&mask).map(|(v, &m)| (!m).then_some(v)),
            )),
        }
    }

    /// Category names, for a categorical column (string columns are factorized).
    pub fn categories(&self) -> Option<&Arc<Vec<String>>> {
        match self {
            Self::Categorical { categories, .. } => Some(categories),
            Self::Numeric(_) | Self::Float64(_) | Self::Int64(_) => None,
        }
    }
}

/// A string column as a categorical: its distinct values sorted (as `pandas.Categorical`
/// orders them), missing values `-1`. This is how a label column that the converter had to join
/// as strings (categorical in one input, plain strings in another) still loads as labels.
fn factorize<'a>(values: impl Iterator<Item = Option<&'a String>> + Clone) -> ObsSource {
    let mut categories: Vec<String> = values.clone().flatten().cloned().collect();
    categories.sort_unstable();
    categories.dedup();
    let codes = values
        .map(|v| v.map_or(-1, |v| categories.binary_search(v).map_or(-1, |i| i as i32)))
        .collect();
    ObsSource::Categorical {
        codes,
        categories: Arc::new(categories),
    }
}

/// A batch's obs arrays and its row-id array.
pub(crate) type BatchExtras<M> = (Vec<ObsPart<M>>, Option<<M as Memory>::Array<i64>>);

/// What a loader adds to each batch besides `X`: matrices, obs columns, row ids.
#[derive(Debug, Default)]
pub struct Extras {
    /// The requested layers and obsm entries, in the order batches carry them.
    pub aligned: Vec<AlignedMatrix>,
    /// `(name, values)` in the loader's `obs_keys` order.
    pub obs: Vec<(String, ObsSource)>,
    /// Whether batches carry their global row ids.
    pub return_index: bool,
}

impl Extras {
    /// The obs arrays and the index array of the batch made of rows `split` (positions in
    /// request order) of a fetch whose global row ids, in request order, are `rows`.
    pub(crate) fn parts<M: Memory>(
        &self,
        rows: &[u64],
        split: &[usize],
        memory: &M,
    ) -> Result<BatchExtras<M>> {
        let b = split.len();
        let mut obs = Vec::with_capacity(self.obs.len());
        for (_, source) in &self.obs {
            obs.push(match source {
                ObsSource::Categorical { codes, .. } => {
                    ObsPart::Codes(filled(memory, b, |out: &mut [i64]| {
                        for (o, &i) in out.iter_mut().zip(split) {
                            *o = i64::from(codes[rows[i] as usize]);
                        }
                    })?)
                }
                ObsSource::Numeric(v) => ObsPart::Values(pick(memory, v, rows, split)?),
                ObsSource::Float64(v) => ObsPart::Float64(pick(memory, v, rows, split)?),
                ObsSource::Int64(v) => ObsPart::Int64(pick(memory, v, rows, split)?),
            });
        }
        let index = if self.return_index {
            Some(filled(memory, b, |out: &mut [i64]| {
                for (o, &i) in out.iter_mut().zip(split) {
                    *o = rows[i] as i64;
                }
            })?)
        } else {
            None
        };
        Ok((obs, index))
    }
}

/// The values of `column` at the global rows of positions `split` among `rows`.
fn pick<M: Memory, T: Element>(
    memory: &M,
    column: &[T],
    rows: &[u64],
    split: &[usize],
) -> Result<M::Array<T>> {
    filled(memory, split.len(), |out: &mut [T]| {
        for (o, &i) in out.iter_mut().zip(split) {
            *o = column[rows[i] as usize];
        }
    })
}
