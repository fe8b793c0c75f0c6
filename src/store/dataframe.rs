//! AnnData `dataframe` elements (`obs`, `var`): the index and typed columns.

use std::collections::HashMap;

use serde_json::Value;

use super::source::ElementSource;
use crate::error::{Error, Result};
use crate::zarr::dtype::Dtype;
use crate::zarr::node::{encoding, join, NodeKind};

/// One dataframe column, decoded whole.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Column {
    /// A pandas categorical: `codes[i]` indexes `categories`, `-1` is missing.
    /// Non-string categories are given in their exact text form (decimal integers, the
    /// shortest text that reads back as the same float, `true` / `false`), with their dtype.
    Categorical {
        /// Per-row category codes.
        codes: Vec<i64>,
        /// Category names.
        categories: Vec<String>,
        /// Whether the categories are ordered.
        ordered: bool,
        /// The categories' stored dtype ([`Dtype::String`] for names).
        categories_dtype: Dtype,
    },
    /// float64 values.
    Float(Vec<f64>),
    /// float32 values (kept apart so that a float32 column stays float32).
    Float32(Vec<f32>),
    /// Integer values of the stored width `dtype` (`int8` … `uint64`); a `uint64` column keeps
    /// its values' bits in `i64` (read them with [`Column::int_value`]).
    Int {
        /// Values (bits of `u64` for `uint64`).
        values: Vec<i64>,
        /// The stored integer dtype.
        dtype: Dtype,
    },
    /// Boolean values.
    Bool(Vec<bool>),
    /// Strings.
    String(Vec<String>),
    /// A pandas nullable integer column; `mask[i]` is true where the value is missing.
    NullableInt {
        /// Values (arbitrary where masked; bits of `u64` for `uint64`).
        values: Vec<i64>,
        /// Missing-value mask.
        mask: Vec<bool>,
        /// The stored integer dtype (`Int8` … `UInt64` in pandas).
        dtype: Dtype,
    },
    /// A pandas nullable boolean column; `mask[i]` is true where the value is missing.
    NullableBool {
        /// Values (arbitrary where masked).
        values: Vec<bool>,
        /// Missing-value mask.
        mask: Vec<bool>,
    },
    /// A pandas nullable string column; `mask[i]` is true where the value is missing.
    NullableString {
        /// Values (arbitrary where masked).
        values: Vec<String>,
        /// Missing-value mask.
        mask: Vec<bool>,
    },
}

impl Column {
    /// An `int64` column.
    pub fn int64(values: Vec<i64>) -> Self {
        Self::Int {
            values,
            dtype: Dtype::I64,
        }
    }

    /// A categorical column of string categories.
    pub fn categorical(codes: Vec<i64>, categories: Vec<String>, ordered: bool) -> Self {
        Self::Categorical {
            codes,
            categories,
            ordered,
            categories_dtype: Dtype::String,
        }
    }

    /// The exact value of an integer stored as `v` in a column of `dtype` (`uint64` bits
    /// read as unsigned).
    pub fn int_value(v: i64, dtype: Dtype) -> i128 {
        if dtype == Dtype::U64 {
            i128::from(v as u64)
        } else {
            i128::from(v)
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Self::Categorical { codes, .. } => codes.len(),
            Self::Float(v) => v.len(),
            Self::Float32(v) => v.len(),
            Self::Int { values, .. } => values.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::NullableInt { values, .. } => values.len(),
            Self::NullableBool { values, .. } => values.len(),
            Self::NullableString { values, .. } => values.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as strings (missing values and codes become `None`), for indexes and labels.
    pub fn to_strings(&self) -> Vec<Option<String>> {
        match self {
            Self::Categorical {
                codes, categories, ..
            } => codes
                .iter()
                .map(|&c| {
                    usize::try_from(c)
                        .ok()
                        .and_then(|c| categories.get(c).cloned())
                })
                .collect(),
            Self::Float(v) => v.iter().map(|x| Some(x.to_string())).collect(),
            Self::Float32(v) => v.iter().map(|x| Some(x.to_string())).collect(),
            Self::Int { values, dtype } => values
                .iter()
                .map(|&x| Some(Self::int_value(x, *dtype).to_string()))
                .collect(),
            Self::Bool(v) => v.iter().map(|x| Some(x.to_string())).collect(),
            Self::String(v) => v.iter().cloned().map(Some).collect(),
            Self::NullableInt {
                values,
                mask,
                dtype,
            } => masked(values, mask, |&x| Self::int_value(x, *dtype).to_string()),
            Self::NullableBool { values, mask } => masked(values, mask, |x| x.to_string()),
            Self::NullableString { values, mask } => masked(values, mask, Clone::clone),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Categorical,
    Int,
    Float,
    Float32,
    Bool,
    NullableInt,
    NullableBool,
    String,
    NullableString,
}

fn kind(c: &Column) -> Kind {
    match c {
        Column::Categorical { .. } => Kind::Categorical,
        Column::Int { .. } => Kind::Int,
        Column::Float(_) => Kind::Float,
        Column::Float32(_) => Kind::Float32,
        Column::Bool(_) => Kind::Bool,
        Column::NullableInt { .. } => Kind::NullableInt,
        Column::NullableBool { .. } => Kind::NullableBool,
        Column::String(_) => Kind::String,
        Column::NullableString { .. } => Kind::NullableString,
        #[allow(unreachable_patterns)]
        _ => Kind::NullableString,
    }
}

/// The kind the concatenation takes, as pandas would give it where that is a column anndata
/// writes: numbers stay numbers (float64 with NaN where values are missing or kinds mix, where
/// pandas would make an `object` column), float32 stays float32, and only a mix with strings
/// becomes nullable strings.
fn joined_kind(kinds: &[Kind], missing: bool) -> Kind {
    use Kind::*;
    let all = |k: &[Kind]| kinds.iter().all(|x| k.contains(x));
    if all(&[Categorical]) {
        Categorical
    } else if all(&[Int]) && !missing {
        Int
    } else if all(&[Int, Float]) {
        Float
    } else if all(&[Float32]) {
        Float32
    } else if all(&[Bool]) && !missing {
        Bool
    } else if all(&[Bool, NullableBool]) {
        NullableBool
    } else if all(&[Int, NullableInt]) {
        NullableInt
    } else if all(&[Int, Float, Float32, NullableInt, Bool, NullableBool]) {
        Float
    } else if all(&[String]) && !missing {
        String
    } else {
        NullableString
    }
}

/// Concatenates the pieces of one column; `None` pieces are missing for their `len` rows.
pub(crate) fn concat_outer(pieces: Vec<(usize, Option<Column>)>) -> Column {
    let kinds: Vec<Kind> = pieces
        .iter()
        .filter_map(|(_, c)| c.as_ref().map(kind))
        .collect();
    // Rows without a value: a 0-row piece lacking the column has none.
    let missing = pieces.iter().any(|(n, c)| c.is_none() && *n > 0);
    let total: usize = pieces.iter().map(|(n, _)| n).sum();
    // The integer dtype the pieces promote to (numpy's rule), and the categories' dtype.
    let dtypes = |of: fn(&Column) -> Option<Dtype>| {
        pieces
            .iter()
            .filter_map(|(_, c)| c.as_ref().and_then(of))
            .reduce(Dtype::promote)
    };
    let int_dtype = dtypes(|c| match c {
        Column::Int { dtype, .. } | Column::NullableInt { dtype, .. } => Some(*dtype),
        _ => None,
    })
    .unwrap_or(Dtype::I64);
    let mut kind = joined_kind(&kinds, missing);
    if matches!(kind, Kind::Int | Kind::NullableInt) && !int_dtype.is_integer() {
        // int64 with uint64: numpy's float64.
        kind = Kind::Float;
    }
    match kind {
        Kind::Categorical => {
            let categories_dtype = dtypes(|c| match c {
                Column::Categorical {
                    categories_dtype, ..
                } => Some(*categories_dtype),
                _ => None,
            })
            .unwrap_or(Dtype::String);
            let mut categories: Vec<String> = Vec::new();
            let mut position: HashMap<String, i64> = HashMap::new();
            let mut codes = Vec::with_capacity(total);
            let mut ordered = true;
            for (n, piece) in pieces {
                match piece {
                    Some(Column::Categorical {
                        codes: c,
                        categories: cats,
                        ordered: o,
                        ..
                    }) => {
                        ordered &= o;
                        let remap: Vec<i64> = cats
                            .into_iter()
                            .map(|cat| {
                                let next = position.len() as i64;
                                *position.entry(cat.clone()).or_insert_with(|| {
                                    categories.push(cat);
                                    next
                                })
                            })
                            .collect();
                        codes.extend(c.iter().map(|&code| {
                            usize::try_from(code)
                                .ok()
                                .and_then(|i| remap.get(i).copied())
                                .unwrap_or(-1)
                        }));
                    }
                    _ => codes.extend(std::iter::repeat_n(-1, n)),
                }
            }
            Column::Categorical {
                codes,
                categories,
                ordered,
                categories_dtype,
            }
        }
        // Values of narrower pieces are the same numbers; a uint64 target has unsigned
        // pieces only (with a signed one it would be float64), so bits stay values.
        Kind::Int => Column::Int {
            values: pieces
                .into_iter()
                .flat_map(|(_, c)| match c {
                    Some(Column::Int { values, .. }) => values,
                    _ => Vec::new(),
                })
                .collect(),
            dtype: int_dtype,
        },
        Kind::Float => {
            let mut out = Vec::with_capacity(total);
            for (n, piece) in pieces {
                match piece {
                    Some(Column::Float(v)) => out.extend(v),
                    Some(Column::Float32(v)) => out.extend(v.iter().map(|&x| f64::from(x))),
                    Some(Column::Int { values, dtype }) => {
                        out.extend(values.iter().map(|&x| Column::int_value(x, dtype) as f64))
                    }
                    Some(Column::Bool(v)) => out.extend(v.iter().map(|&x| f64::from(u8::from(x)))),
                    Some(Column::NullableInt {
                        values,
                        mask,
                        dtype,
                    }) => out.extend(values.iter().zip(&mask).map(|(&v, &m)| {
                        if m {
                            f64::NAN
                        } else {
                            Column::int_value(v, dtype) as f64
                        }
                    })),
                    Some(Column::NullableBool { values, mask }) => {
                        out.extend(values.iter().zip(&mask).map(|(&v, &m)| {
                            if m {
                                f64::NAN
                            } else {
                                f64::from(u8::from(v))
                            }
                        }))
                    }
                    _ => out.extend(std::iter::repeat_n(f64::NAN, n)),
                }
            }
            Column::Float(out)
        }
        Kind::Float32 => {
            let mut out = Vec::with_capacity(total);
            for (n, piece) in pieces {
                match piece {
                    Some(Column::Float32(v)) => out.extend(v),
                    _ => out.extend(std::iter::repeat_n(f32::NAN, n)),
                }
            }
            Column::Float32(out)
        }
        Kind::Bool => Column::Bool(
            pieces
                .into_iter()
                .flat_map(|(_, c)| match c {
                    Some(Column::Bool(v)) => v,
                    _ => Vec::new(),
                })
                .collect(),
        ),
        Kind::NullableBool => {
            let (mut values, mut mask) = (Vec::with_capacity(total), Vec::with_capacity(total));
            for (n, piece) in pieces {
                match piece {
                    Some(Column::Bool(v)) => {
                        mask.extend(std::iter::repeat_n(false, v.len()));
                        values.extend(v);
                    }
                    Some(Column::NullableBool { values: v, mask: m }) => {
                        values.extend(v);
                        mask.extend(m);
                    }
                    _ => {
                        values.extend(std::iter::repeat_n(false, n));
                        mask.extend(std::iter::repeat_n(true, n));
                    }
                }
            }
            Column::NullableBool { values, mask }
        }
        Kind::NullableInt => {
            let (mut values, mut mask) = (Vec::with_capacity(total), Vec::with_capacity(total));
            for (n, piece) in pieces {
                match piece {
                    Some(Column::Int { values: v, .. }) => {
                        mask.extend(std::iter::repeat_n(false, v.len()));
                        values.extend(v);
                    }
                    Some(Column::NullableInt {
                        values: v, mask: m, ..
                    }) => {
                        values.extend(v);
                        mask.extend(m);
                    }
                    _ => {
                        values.extend(std::iter::repeat_n(0, n));
                        mask.extend(std::iter::repeat_n(true, n));
                    }
                }
            }
            Column::NullableInt {
                values,
                mask,
                dtype: int_dtype,
            }
        }
        Kind::String => Column::String(
            pieces
                .into_iter()
                .flat_map(|(_, c)| match c {
                    Some(Column::String(v)) => v,
                    _ => Vec::new(),
                })
                .collect(),
        ),
        Kind::NullableString => {
            let (mut values, mut mask) = (Vec::with_capacity(total), Vec::with_capacity(total));
            for (n, piece) in pieces {
                match piece {
                    Some(c) => {
                        for v in c.to_strings() {
                            mask.push(v.is_none());
                            values.push(v.unwrap_or_default());
                        }
                    }
                    None => {
                        values.extend(std::iter::repeat_n(String::new(), n));
                        mask.extend(std::iter::repeat_n(true, n));
                    }
                }
            }
            Column::NullableString { values, mask }
        }
    }
}

fn masked<T>(values: &[T], mask: &[bool], f: impl Fn(&T) -> String) -> Vec<Option<String>> {
    values
        .iter()
        .zip(mask.iter().chain(std::iter::repeat(&false)))
        .map(|(v, &m)| (!m).then(|| f(v)))
        .collect()
}

/// The dataframe group at `path`: checks its encoding and returns its attributes.
fn dataframe_attrs(
    store: &dyn ElementSource,
    path: &str,
) -> Result<serde_json::Map<String, Value>> {
    let attrs = store.attributes(path)?;
    let (kind, version) = encoding(&attrs);
    if kind != "dataframe" {
        return Err(Error::UnknownEncoding {
            path: path.to_string(),
            encoding_type: kind,
            encoding_version: version,
            expected: "\"dataframe\"".into(),
        });
    }
    Ok(attrs)
}

/// Column names in `column-order`.
pub(crate) fn column_names(store: &dyn ElementSource, path: &str) -> Result<Vec<String>> {
    let attrs = dataframe_attrs(store, path)?;
    Ok(match attrs.get("column-order") {
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(name)) => vec![name.clone()],
        _ => Vec::new(),
    })
}

/// The dataframe's index as strings (`_index` names the index column).
pub(crate) fn read_index(store: &dyn ElementSource, path: &str) -> Result<Vec<String>> {
    let attrs = dataframe_attrs(store, path)?;
    let name = attrs
        .get("_index")
        .and_then(Value::as_str)
        .unwrap_or("_index")
        .to_string();
    let column = read_element(store, path, &name)?;
    Ok(column
        .to_strings()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect())
}

/// Reads column `name` of the dataframe at `path`.
pub(crate) fn read_column(store: &dyn ElementSource, path: &str, name: &str) -> Result<Column> {
    dataframe_attrs(store, path)?;
    read_element(store, path, name)
}

fn read_element(store: &dyn ElementSource, df: &str, name: &str) -> Result<Column> {
    let path = join(df, name);
    let kind = store
        .kind(&path)?
        .ok_or_else(|| crate::zarr::node::missing(&path))?;
    let attrs = store.attributes(&path)?;
    let (encoding_type, encoding_version) = encoding(&attrs);
    let unknown = |expected: &str| Error::UnknownEncoding {
        path: path.clone(),
        encoding_type: encoding_type.clone(),
        encoding_version: encoding_version.clone(),
        expected: expected.into(),
    };
    match kind {
        NodeKind::Group => match encoding_type.as_str() {
            "categorical" => {
                let codes = store.read_i64(&join(&path, "codes"))?;
                let (categories, categories_dtype) =
                    read_strings_any(store, &join(&path, "categories"))?;
                let ordered = attrs
                    .get("ordered")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                check_codes(&path, &codes, categories.len())?;
                Ok(Column::Categorical {
                    codes,
                    categories,
                    ordered,
                    categories_dtype,
                })
            }
            "nullable-integer" => {
                let (values, dtype) = read_ints(store, &join(&path, "values"))?;
                Ok(Column::NullableInt {
                    values,
                    mask: read_mask(store, &path)?,
                    dtype,
                })
            }
            "nullable-boolean" => Ok(Column::NullableBool {
                values: read_bools(store, &join(&path, "values"))?,
                mask: read_mask(store, &path)?,
            }),
            "nullable-string-array" => Ok(Column::NullableString {
                values: read_strings(store, &join(&path, "values"))?,
                mask: read_mask(store, &path)?,
            }),
            _ => Err(unknown(
                "a column: categorical, nullable-integer, nullable-boolean, nullable-string-array",
            )),
        },
        NodeKind::Array => {
            // anndata < 0.8 (dataframe 0.1.0): categorical codes with categories in `__categories`
            // (a name zarr v3 reserves, so zarrs may refuse the path: then there is none).
            let legacy = join(&join(df, "__categories"), name);
            if let Ok(Some(_)) = store.kind(&legacy) {
                let codes = store.read_i64(&path)?;
                let (categories, categories_dtype) = read_strings_any(store, &legacy)?;
                check_codes(&path, &codes, categories.len())?;
                return Ok(Column::Categorical {
                    codes,
                    categories,
                    ordered: attrs
                        .get("ordered")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    categories_dtype,
                });
            }
            if !matches!(encoding_type.as_str(), "" | "array" | "string-array") {
                return Err(unknown("an array or string-array column"));
            }
            let (dtype, shape) = store.array_info(&path)?;
            if shape.len() != 1 {
                return Err(Error::ShapeMismatch {
                    path,
                    found: format!("shape {shape:?}"),
                    expected: "a 1-dimensional column".into(),
                });
            }
            Ok(match dtype {
                Dtype::String => Column::String(store.read_strings(&path)?),
                Dtype::Bool => Column::Bool(store.read_bool(&path)?),
                // Read as f64 and narrowed: exact, the values were float32 (or float16, kept
                // as float32: the loader hands out float32).
                Dtype::F32 | Dtype::F16 => Column::Float32(
                    store
                        .read_f64(&path)?
                        .into_iter()
                        .map(|x| x as f32)
                        .collect(),
                ),
                Dtype::F64 => Column::Float(store.read_f64(&path)?),
                _ => {
                    let (values, dtype) = read_ints(store, &path)?;
                    Column::Int { values, dtype }
                }
            })
        }
    }
}

fn check_codes(path: &str, codes: &[i64], n_categories: usize) -> Result<()> {
    let bound = i64::try_from(n_categories).unwrap_or(i64::MAX);
    match codes.iter().position(|&c| c < -1 || c >= bound) {
        Some(row) => Err(Error::InvalidCategoryCode {
            path: path.to_string(),
            row: row as u64,
            code: codes[row],
            n_categories: n_categories as u64,
        }),
        None => Ok(()),
    }
}

fn read_mask(store: &dyn ElementSource, group: &str) -> Result<Vec<bool>> {
    read_bools(store, &join(group, "mask"))
}

fn read_bools(store: &dyn ElementSource, path: &str) -> Result<Vec<bool>> {
    match store.array_info(path)?.0 {
        Dtype::Bool => store.read_bool(path),
        _ => Ok(store.read_i64(path)?.into_iter().map(|v| v != 0).collect()),
    }
}

fn read_strings(store: &dyn ElementSource, path: &str) -> Result<Vec<String>> {
    match store.array_info(path)?.0 {
        Dtype::String => store.read_strings(path),
        found => Err(Error::UnsupportedDtype {
            path: path.to_string(),
            found: found.to_string(),
            expected: "string".into(),
        }),
    }
}

/// An integer array's values and dtype, exactly: `uint64` values as their bits.
fn read_ints(store: &dyn ElementSource, path: &str) -> Result<(Vec<i64>, Dtype)> {
    let dtype = store.array_info(path)?.0;
    let values = match dtype {
        Dtype::U64 => store
            .read_u64(path)?
            .into_iter()
            .map(|v| v as i64)
            .collect(),
        _ => store.read_i64(path)?,
    };
    // A bool array read as integers (an old writer's mask or values) counts as int8.
    Ok((values, if dtype.is_integer() { dtype } else { Dtype::I8 }))
}

/// Strings, or numbers and bools in their exact text form (categories may be numeric), with
/// the stored dtype.
fn read_strings_any(store: &dyn ElementSource, path: &str) -> Result<(Vec<String>, Dtype)> {
    let dtype = store.array_info(path)?.0;
    let text = match dtype {
        Dtype::String => store.read_strings(path)?,
        // Widened to f64 exactly; the shortest text that reads back as the same f64 is also
        // the float32's when parsed as f64 and narrowed.
        Dtype::F16 | Dtype::F32 | Dtype::F64 => {
            store.read_f64(path)?.iter().map(f64::to_string).collect()
        }
        Dtype::Bool => store.read_bool(path)?.iter().map(bool::to_string).collect(),
        _ => {
            let (values, dtype) = read_ints(store, path)?;
            values
                .iter()
                .map(|&v| Column::int_value(v, dtype).to_string())
                .collect()
        }
    };
    Ok((text, dtype))
}

#[cfg(test)]
mod tests {
    use super::{concat_outer, Column};

    fn floats(c: Column) -> Vec<Option<f64>> {
        let Column::Float(v) = c else {
            panic!("expected float64, got {c:?}")
        };
        v.into_iter().map(|x| (!x.is_nan()).then_some(x)).collect()
    }

    #[test]
    fn numbers_joined_with_numbers_stay_numbers() {
        let float = Column::Float(vec![0.5, f64::NAN]);
        let nullable = Column::NullableInt {
            values: vec![3, 0],
            mask: vec![false, true],
            dtype: crate::zarr::Dtype::I32,
        };
        let joined = concat_outer(vec![(2, Some(float.clone())), (2, Some(nullable))]);
        assert_eq!(floats(joined), [Some(0.5), None, Some(3.0), None]);
        let joined = concat_outer(vec![(2, Some(float)), (1, Some(Column::Bool(vec![true])))]);
        assert_eq!(floats(joined), [Some(0.5), None, Some(1.0)]);
        let joined = concat_outer(vec![
            (1, Some(Column::Float32(vec![1.5]))),
            (1, Some(Column::int64(vec![2]))),
        ]);
        assert_eq!(floats(joined), [Some(1.5), Some(2.0)]);
    }

    #[test]
    fn integers_keep_their_width_and_join_as_numpy_promotes() {
        use crate::zarr::Dtype;
        let ints = |values: Vec<i64>, dtype| Column::Int { values, dtype };
        let big = u64::MAX - 1;
        // uint64 past i64::MAX: its bits kept, read back exactly.
        let joined = concat_outer(vec![
            (1, Some(ints(vec![big as i64], Dtype::U64))),
            (1, Some(ints(vec![7], Dtype::U32))),
        ]);
        assert_eq!(joined, ints(vec![big as i64, 7], Dtype::U64));
        assert_eq!(
            joined.to_strings(),
            [Some(big.to_string()), Some("7".into())]
        );
        let joined = concat_outer(vec![
            (1, Some(ints(vec![16_778_701], Dtype::I32))),
            (1, Some(ints(vec![1 << 40], Dtype::I64))),
        ]);
        assert_eq!(joined, ints(vec![16_778_701, 1 << 40], Dtype::I64));
        // int64 with uint64: float64, as numpy.
        let joined = concat_outer(vec![
            (1, Some(ints(vec![-1], Dtype::I64))),
            (1, Some(ints(vec![3], Dtype::U64))),
        ]);
        assert_eq!(joined, Column::Float(vec![-1.0, 3.0]));
    }

    #[test]
    fn float32_stays_float32_with_missing_rows() {
        let joined = concat_outer(vec![(1, Some(Column::Float32(vec![0.25]))), (2, None)]);
        let Column::Float32(v) = joined else {
            panic!("expected float32, got {joined:?}")
        };
        assert_eq!(v[0], 0.25);
        assert!(v[1].is_nan() && v[2].is_nan());
    }

    #[test]
    fn strings_mixed_in_make_nullable_strings() {
        let joined = concat_outer(vec![
            (1, Some(Column::Float(vec![1.0]))),
            (1, Some(Column::String(vec!["a".into()]))),
            (1, None),
        ]);
        assert_eq!(
            joined,
            Column::NullableString {
                values: vec!["1".into(), "a".into(), String::new()],
                mask: vec![false, false, true],
            }
        );
    }
}
