//! Whole numbers as JSON Schema counts them: an `integer` is any number whose fraction is
//! zero, so `2.0` is the integer 2 and must be read as one. Serde's `u32` refuses it.

use serde::{de, Deserialize, Deserializer};

/// A `u32` sent as `2`, `2.0` or `2e0`.
struct Whole(u32);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Whole;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a whole number from 0 to {}", u32::MAX)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole, E> {
                u32::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole, E> {
                u32::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Whole, E> {
                if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
                    Ok(Whole(v as u32))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// For an optional member: left out or `null` is `None`.
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(Option::<Whole>::deserialize(d)?.map(|w| w.0))
}

/// For a member that must be there.
pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Whole::deserialize(d).map(|w| w.0)
}

/// For a merge patch's member: see [`super::present`].
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    optional(d).map(Some)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[derive(Debug, serde::Deserialize)]
    struct Count {
        #[serde(default, deserialize_with = "super::optional")]
        n: Option<u32>,
    }

    fn read(value: serde_json::Value) -> Result<Option<u32>, String> {
        serde_json::from_value::<Count>(json!({ "n": value }))
            .map(|c| c.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_written_with_a_zero_fraction_are_integers() {
        assert_eq!(read(json!(2)), Ok(Some(2)));
        assert_eq!(read(json!(2.0)), Ok(Some(2)));
        assert_eq!(read(json!(null)), Ok(None));
        assert_eq!(read(json!(4294967295u64)), Ok(Some(u32::MAX)));
        for bad in [
            json!(2.5),
            json!(-1),
            json!(-1.0),
            json!(4294967296u64),
            json!(1e40),
            json!("2"),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
    }
}
