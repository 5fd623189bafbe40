//! Decoding a queued call's parameters (a JSON object) into its parameters struct.
//!
//! Replay code is compiled once per action in the user's crate, so what it instantiates there
//! is what each action costs to compile. Reading the struct straight from the JSON text with
//! serde_json instantiates its deserializer and both of the struct's derived visitors (by name
//! and by position) for every action: a third of each action's code. Here the JSON is parsed
//! into an object by code compiled once, in this crate, and the struct is read from the
//! object's values with a small deserializer.

use serde::de::value::MapDeserializer;
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, Error as _, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::{Error, Map, Value};

/// Decodes parameters by field name: the struct's derived `visit_map` reads the object's
/// entries, so every `#[serde(...)]` attribute of its fields applies.
pub(crate) fn by_name<P: DeserializeOwned>(json: &str) -> Result<P, Error> {
    P::deserialize(MapDeserializer::new(parse_object(json)?.into_iter()))
}

/// Decodes parameters whose fields carry no `#[serde(...)]` attribute, as [`by_name`] does.
///
/// The struct's derived `visit_seq` reads the object's values in the order of the struct's
/// fields, which is about a third of the code of its `visit_map` and needs no field-name
/// visitor. Without attributes the two read the same: a field missing from the object is
/// read as serde reads a missing field (`None` for an `Option`, else a "missing field"
/// error), and entries for no field are ignored.
pub(crate) fn by_position<P: DeserializeOwned>(json: &str) -> Result<P, Error> {
    P::deserialize(ByPosition(parse_object(json)?))
}

/// Parses a JSON object.
fn parse_object(json: &str) -> Result<Map<String, Value>, Error> {
    serde_json::from_str(json)
}

/// A JSON object, read as a struct by the position of its fields.
struct ByPosition(Map<String, Value>);

impl<'de> Deserializer<'de> for ByPosition {
    type Error = Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_seq(Fields {
            object: self.0,
            fields: fields.iter(),
        })
    }

    /// What is not read as a struct is read by name.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        MapDeserializer::new(self.0.into_iter()).deserialize_any(visitor)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The object's values in the order of `fields`.
struct Fields {
    object: Map<String, Value>,
    fields: core::slice::Iter<'static, &'static str>,
}

impl<'de> SeqAccess<'de> for Fields {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(&field) = self.fields.next() else {
            return Ok(None);
        };
        match self.object.remove(field) {
            Some(value) => seed.deserialize(value).map(Some),
            None => seed.deserialize(MissingField(field)).map(Some),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len())
    }
}

/// A field the object does not have: `None` for an `Option`, else a "missing field" error,
/// as serde's derived `visit_map` reads it.
struct MissingField(&'static str);

impl<'de> Deserializer<'de> for MissingField {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(Error::missing_field(self.0))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_none()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Plain {
        name: String,
        count: u32,
        note: Option<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Empty {}

    #[test]
    fn reads_fields_by_name_whatever_their_order() {
        let json = r#"{"note":"n","count":2,"name":"a"}"#;
        let expected = Plain {
            name: "a".into(),
            count: 2,
            note: Some("n".into()),
        };
        assert_eq!(by_position::<Plain>(json).unwrap(), expected);
        assert_eq!(by_name::<Plain>(json).unwrap(), expected);
    }

    #[test]
    fn missing_options_are_none_and_extra_entries_are_ignored() {
        let json = r#"{"count":2,"name":"a","removed":true}"#;
        let expected = Plain {
            name: "a".into(),
            count: 2,
            note: None,
        };
        assert_eq!(by_position::<Plain>(json).unwrap(), expected);
        assert_eq!(by_name::<Plain>(json).unwrap(), expected);
        assert_eq!(by_position::<Empty>("{}").unwrap(), Empty {});
    }

    #[test]
    fn reports_missing_fields_wrong_types_and_non_objects() {
        for decode in [by_position::<Plain>, by_name::<Plain>] {
            let missing = decode(r#"{"count":2}"#).unwrap_err().to_string();
            assert!(missing.contains("missing field `name`"), "{missing}");
            let wrong = decode(r#"{"count":"2","name":"a"}"#)
                .unwrap_err()
                .to_string();
            assert!(wrong.contains("invalid type"), "{wrong}");
            assert!(decode(r#"["a",2,null]"#).is_err());
            assert!(decode("{not json").is_err());
        }
    }
}
