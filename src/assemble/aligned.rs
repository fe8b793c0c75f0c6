//! Row-aligned matrices that batches carry beside `X`: `layers[k]` (sparse or dense, with X's
//! columns) and `obsm[k]` (dense `[n_obs, d]`, or sparse), opened once in every dataset of the
//! collection and read by rows exactly as `X` is.

use crate::collection::DatasetCollection;
use crate::error::{Error, Result};
use crate::store::XElement;

/// Which AnnData group a matrix comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlignedGroup {
    /// `layers/NAME`: the collection's variables as columns.
    Layers,
    /// `obsm/NAME`: any number of columns.
    Obsm,
}

impl AlignedGroup {
    /// The group's name in an AnnData store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Layers => "layers",
            Self::Obsm => "obsm",
        }
    }
}

/// One requested matrix, opened in every dataset.
#[derive(Debug)]
pub struct AlignedMatrix {
    /// The key inside its group (`counts`, `X_pca`).
    pub name: String,
    /// `layers` or `obsm`.
    pub group: AlignedGroup,
    /// The element in each dataset, in the collection's order.
    pub(crate) elements: Vec<XElement>,
}

impl AlignedMatrix {
    /// Opens `group/name` in every dataset of `collection` and checks that the datasets agree:
    /// all sparse or all dense, the same number of columns (a layer: the collection's `n_var`).
    ///
    /// # Errors
    /// [`Error::MissingElement`] for a dataset without it (or data held in memory),
    /// [`Error::UnknownEncoding`] for an element that is not CSR or dense (e.g. a data frame in
    /// `obsm`), [`Error::ShapeMismatch`] when rows, columns or kinds disagree.
    pub fn open(collection: &DatasetCollection, group: AlignedGroup, name: &str) -> Result<Self> {
        if name.is_empty() || name.contains('/') {
            return Err(Error::parameter(
                group.as_str(),
                name,
                "a key of the group (no '/', not empty)",
            ));
        }
        let path = format!("{}/{name}", group.as_str());
        let mut elements = Vec::with_capacity(collection.datasets().len());
        for (dataset, label) in collection.datasets().iter().zip(collection.dataset_names()) {
            let element = dataset.matrix(&path).map_err(|e| match e {
                Error::MissingElement { .. } => Error::MissingElement {
                    path: format!("{}/{label}", collection.path().display()),
                    element: path.clone(),
                },
                e => e,
            })?;
            if element.is_csc() {
                return Err(element.csc_error());
            }
            let first: Option<&XElement> = elements.first();
            let disagrees = match first {
                Some(first) => {
                    first.is_sparse() != element.is_sparse()
                        || first.n_var() != element.n_var()
                        || first.row_width() != element.row_width()
                }
                None => group == AlignedGroup::Layers && element.n_var() != collection.n_var(),
            };
            if disagrees {
                let expected = match first {
                    Some(f) => format!(
                        "{} with {} columns, as in the first dataset",
                        kind(f),
                        f.n_var()
                    ),
                    None => format!("{} columns (the collection's n_var)", collection.n_var()),
                };
                return Err(Error::ShapeMismatch {
                    path: format!("{}/{label}/{path}", collection.path().display()),
                    found: format!("{} with {} columns", kind(&element), element.n_var()),
                    expected,
                });
            }
            elements.push(element);
        }
        Ok(Self {
            name: name.to_string(),
            group,
            elements,
        })
    }
}

impl AlignedMatrix {
    /// The dimensions of one row: `[n_var]` for a sparse matrix, the array's trailing shape
    /// for a dense one (`[3, 2]` for an obsm entry of shape `(n, 3, 2)`).
    pub fn row_shape(&self) -> Vec<u64> {
        match self.elements.first() {
            Some(XElement::Dense(x)) => x.shape().get(1..).unwrap_or_default().to_vec(),
            Some(e) => vec![e.n_var()],
            None => Vec::new(),
        }
    }

    /// The shape of `rows` rows of a dense matrix `width` elements wide: `[rows]` then
    /// [`Self::row_shape`] when that holds `width` elements, else `[rows, width]`.
    pub(crate) fn rows_shape(&self, rows: usize, width: usize) -> Vec<i64> {
        let tail = self.row_shape();
        let fits = tail.iter().try_fold(1u64, |n, &d| n.checked_mul(d)) == Some(width as u64)
            && tail.iter().all(|&d| i64::try_from(d).is_ok());
        let mut shape = vec![rows as i64];
        if fits && !tail.is_empty() {
            shape.extend(tail.iter().map(|&d| d as i64));
        } else {
            shape.push(width as i64);
        }
        shape
    }
}

fn kind(e: &XElement) -> &'static str {
    if e.is_sparse() {
        "a sparse matrix"
    } else {
        "a dense array"
    }
}
