//! What a collection holds, recorded in its root attributes by the writer and checked on open,
//! so that a dataset that is deleted, lost its `zarr.json`, or cannot be opened is an error
//! rather than a collection silently fewer rows long.
//!
//! The record is an extra root attribute annbatch ignores:
//! `"annbatch-rs": {"inventory": 1, "datasets": {"dataset_0": 1000, ...}}` (n_obs of each).
//! Another writer (annbatch's own `add_adatas`) may append rows without updating it, so a dataset
//! may hold *more* rows than recorded, never fewer.

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// The root attribute holding the record.
pub(crate) const KEY: &str = "annbatch-rs";

/// The datasets a collection must hold, and their row counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Inventory {
    pub(crate) datasets: Vec<(String, u64)>,
}

impl Inventory {
    /// The root attribute's value.
    pub(crate) fn to_json(&self) -> Value {
        let datasets: Map<String, Value> = self
            .datasets
            .iter()
            .map(|(name, n_obs)| (name.clone(), json!(n_obs)))
            .collect();
        json!({"inventory": 1, "datasets": datasets})
    }

    /// The record in `attrs`, if the writer left one; a damaged record is an error.
    pub(crate) fn from_attrs(path: &str, attrs: &Map<String, Value>) -> Result<Option<Self>> {
        let Some(record) = attrs.get(KEY) else {
            return Ok(None);
        };
        let bad = |what: &str| Error::ShapeMismatch {
            path: format!("{path}/zarr.json"),
            found: format!("a damaged \"{KEY}\" attribute ({what})"),
            expected: "{\"inventory\": 1, \"datasets\": {name: n_obs}}".into(),
        };
        let Some(datasets) = record.get("datasets").and_then(Value::as_object) else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(datasets.len());
        for (name, n_obs) in datasets {
            let n_obs = n_obs
                .as_u64()
                .ok_or_else(|| bad(&format!("{name} has no row count")))?;
            out.push((name.clone(), n_obs));
        }
        Ok(Some(Self { datasets: out }))
    }

    /// Fails unless every recorded dataset was `found` (name, n_obs) with at least its rows.
    pub(crate) fn check(&self, path: &str, found: &[(&str, u64)]) -> Result<()> {
        for (name, recorded) in &self.datasets {
            match found.iter().find(|(n, _)| n == name) {
                None => {
                    return Err(Error::MissingElement {
                        path: path.to_string(),
                        element: format!(
                            "{name} (the collection records {} datasets; this one is gone or \
                             has no readable zarr.json: the collection is damaged)",
                            self.datasets.len()
                        ),
                    })
                }
                Some((_, n_obs)) if n_obs < recorded => {
                    return Err(Error::ShapeMismatch {
                        path: format!("{path}/{name}"),
                        found: format!("{n_obs} rows"),
                        expected: format!(
                            "the {recorded} the collection records (the dataset lost rows)"
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_checks_presence_and_rows() {
        let inv = Inventory {
            datasets: vec![("dataset_0".into(), 10), ("dataset_1".into(), 5)],
        };
        let mut attrs = Map::new();
        attrs.insert(KEY.into(), inv.to_json());
        let back = Inventory::from_attrs("c", &attrs)
            .expect("ok")
            .expect("some");
        assert_eq!(back, inv);
        assert!(back
            .check("c", &[("dataset_0", 10), ("dataset_1", 7)])
            .is_ok());
        let gone = back.check("c", &[("dataset_0", 10)]).expect_err("missing");
        assert!(gone.to_string().contains("dataset_1"), "{gone}");
        assert!(back
            .check("c", &[("dataset_0", 9), ("dataset_1", 5)])
            .is_err());
        assert_eq!(Inventory::from_attrs("c", &Map::new()).expect("ok"), None);
    }
}
