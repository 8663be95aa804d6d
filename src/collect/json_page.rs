//! Reading a platform page in one pass over its bytes, without building a
//! `serde_json::Value` of it.
//!
//! A page of a thousand records held as `Value` trees (a map and a `String`
//! per field) and copied into field maps was most of what a JSON ingest
//! cost. Here the page is walked once: the path to the record array and the
//! path to the total are followed, every other part of the page is skipped,
//! and each record becomes a list of its fields whose strings borrow from
//! the page's bytes (escaped text, rare, is the only thing copied).

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::fmt;

/// A field value of a record, borrowed from the page where it can be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lite<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as `serde_json` reads it.
    Num(Number),
    /// A string (borrowed unless it held escapes).
    Str(Cow<'a, str>),
    /// An array or object inside a field: kept whole, it is only ever echoed.
    Nested(Value),
}

impl Lite<'_> {
    /// The field as text, as collect reads every field: strings trimmed,
    /// numbers and flags as written, null empty, nested values as compact JSON.
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match self {
            Lite::Null => Cow::Borrowed(""),
            Lite::Str(s) => Cow::Borrowed(s.trim()),
            Lite::Num(n) => Cow::Owned(n.to_string()),
            Lite::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Lite::Nested(v) => Cow::Owned(v.to_string()),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Lite::Null => Value::Null,
            Lite::Bool(b) => Value::Bool(b),
            Lite::Num(n) => Value::Number(n),
            Lite::Str(s) => Value::String(s.into_owned()),
            Lite::Nested(v) => v,
        }
    }
}

/// One element of the record array.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawRecord<'a> {
    /// An object: its fields in the order sent (a repeated key: the last counts).
    Object(Vec<(Cow<'a, str>, Lite<'a>)>),
    /// Anything else the platform put in the array.
    NotObject(Value),
}

impl RawRecord<'_> {
    /// The record as compact JSON with its keys sorted, as a `Value` prints
    /// it: the text a quarantine row keeps.
    pub(crate) fn to_json(&self) -> String {
        match self {
            RawRecord::NotObject(v) => v.to_string(),
            RawRecord::Object(fields) => {
                let map: serde_json::Map<String, Value> =
                    fields.iter().map(|(k, v)| (k.clone().into_owned(), v.clone().into_value())).collect();
                Value::Object(map).to_string()
            }
        }
    }
}

/// What is at the records path of a page.
#[derive(Debug, PartialEq)]
pub(crate) enum Records<'a> {
    /// An array, element by element.
    Array(Vec<RawRecord<'a>>),
    /// `null`.
    Null,
    /// Something that is not an array.
    Other,
}

/// The parts of a page collect reads.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct PickedPage<'a> {
    /// The value at the records path, when the path leads somewhere.
    pub records: Option<Records<'a>>,
    /// The value at the total path, when the path leads somewhere (even to `null`).
    pub total: Option<Value>,
}

/// Reads `text` (one JSON document) and picks the value at `records_path`
/// and at `total_path` (dotted, such as `data.records`). A syntax error
/// anywhere in the document is an error, as when the whole page was parsed.
pub(crate) fn pick<'a>(text: &'a str, records_path: &str, total_path: &str) -> Result<PickedPage<'a>, serde_json::Error> {
    let records: Vec<&str> = records_path.split('.').filter(|p| !p.is_empty()).collect();
    let total: Vec<&str> = total_path.split('.').filter(|p| !p.is_empty()).collect();
    let mut de = serde_json::Deserializer::from_str(text);
    let mut out = PickedPage::default();
    Node { records: Some(&records), total: Some(&total), out: &mut out }.deserialize(&mut de)?;
    de.end()?;
    Ok(out)
}

/// A node of the page on the way to one or both targets: what is left of
/// each path from here (`None`: this node is off that path).
struct Node<'p, 'o, 'a> {
    records: Option<&'p [&'p str]>,
    total: Option<&'p [&'p str]>,
    out: &'o mut PickedPage<'a>,
}

impl<'de, 'p, 'o> DeserializeSeed<'de> for Node<'p, 'o, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.records == Some(&[]) {
            self.out.records = Some(d.deserialize_any(RecordsVisitor)?);
        } else if self.total == Some(&[]) {
            self.out.total = Some(Value::deserialize(d)?);
        } else {
            d.deserialize_any(self)?;
        }
        Ok(())
    }
}

/// Drains a map or a sequence that lies off every path.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Below a path's segment `key`: the rest of the path, or `None`.
fn descend<'p>(path: Option<&'p [&'p str]>, key: &str) -> Option<&'p [&'p str]> {
    path.and_then(|p| p.split_first()).filter(|(head, _)| **head == key).map(|(_, rest)| rest)
}

impl<'de, 'p, 'o> Visitor<'de> for Node<'p, 'o, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            let (records, total) = (descend(self.records, &key), descend(self.total, &key));
            if records.is_none() && total.is_none() {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Node { records, total, out: &mut *self.out })?;
            }
        }
        Ok(())
    }

    // A path through something that is not an object leads nowhere, as
    // `Value::get` finds nothing in it.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        drain_seq(seq)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A key, borrowed unless it held escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

struct RecordsVisitor;

impl<'de> Visitor<'de> for RecordsVisitor {
    type Value = Records<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(r) = seq.next_element_seed(RecordSeed)? {
            out.push(r);
        }
        Ok(Records::Array(out))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Records::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map)?;
        Ok(Records::Other)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Records::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Records::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Records::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Records::Other)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Records::Other)
    }
}

struct RecordSeed;

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = RawRecord<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match d.deserialize_any(LiteVisitor { object_fields: true })? {
            Fields::Object(fields) => Ok(RawRecord::Object(fields)),
            Fields::Value(v) => Ok(RawRecord::NotObject(v.into_value())),
        }
    }
}

/// What the value visitor read: a record's fields (at the top of a record)
/// or a value.
enum Fields<'a> {
    Object(Vec<(Cow<'a, str>, Lite<'a>)>),
    Value(Lite<'a>),
}

/// Reads a value; at the top of a record (`object_fields`) an object is kept
/// as its list of fields, below it as a `Value`.
struct LiteVisitor {
    object_fields: bool,
}

impl<'de> Deserialize<'de> for Lite<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(LiteVisitor { object_fields: false })? {
            Fields::Value(v) => Ok(v),
            Fields::Object(_) => Err(de::Error::custom("unexpected object")),
        }
    }
}

impl<'de> Visitor<'de> for LiteVisitor {
    type Value = Fields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Fields::Value(Lite::Null))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Fields::Value(Lite::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Fields::Value(Lite::Num(v.into())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Fields::Value(Lite::Num(v.into())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // As `Value` does: a float JSON cannot write (none parse as such) is null.
        Ok(Fields::Value(Number::from_f64(v).map_or(Lite::Null, Lite::Num)))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Fields::Value(Lite::Str(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Fields::Value(Lite::Str(Cow::Owned(v.to_string()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Fields::Value(Lite::Str(Cow::Owned(v))))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Fields::Value(Lite::Nested(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if !self.object_fields {
            let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
            return Ok(Fields::Value(Lite::Nested(v)));
        }
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(20));
        while let Some(key) = map.next_key_seed(Key)? {
            let value: Lite<'de> = map.next_value()?;
            fields.push((key, value));
        }
        Ok(Fields::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_total_are_picked_whatever_else_the_page_holds() {
        let text = r#"{"code":200,"msg":"ok","extra":[1,{"a":2}],"data":{"page":1,"total":"3","records":[
            {"projectNo":"A-1","pf":7,"score":4.5,"flag":true,"none":null,"tags":[1,2],"esc":"a\"b","projectNo":"A-2"},
            42,
            {"nested":{"x":1}}
        ]}}"#;
        let p = pick(text, "data.records", "data.total").expect("page");
        assert_eq!(p.total, Some(Value::String("3".into())));
        let Some(Records::Array(recs)) = p.records else { panic!("records: {:?}", p.records) };
        assert_eq!(recs.len(), 3);
        let RawRecord::Object(fields) = &recs[0] else { panic!("object") };
        let text_of = |k: &str| fields.iter().rev().find(|(f, _)| f == k).map(|(_, v)| v.text().into_owned());
        assert_eq!(text_of("projectNo").as_deref(), Some("A-2"));
        assert_eq!(text_of("pf").as_deref(), Some("7"));
        assert_eq!(text_of("score").as_deref(), Some("4.5"));
        assert_eq!(text_of("flag").as_deref(), Some("true"));
        assert_eq!(text_of("none").as_deref(), Some(""));
        assert_eq!(text_of("tags").as_deref(), Some("[1,2]"));
        assert_eq!(text_of("esc").as_deref(), Some("a\"b"));
        // Quarantine text: as `Value` prints the record (keys sorted, the last of a repeated key).
        let v: Value = serde_json::from_str(r#"{"projectNo":"A-2","pf":7,"score":4.5,"flag":true,"none":null,"tags":[1,2],"esc":"a\"b"}"#)
            .expect("json");
        assert_eq!(recs[0].to_json(), v.to_string());
        assert_eq!(recs[1], RawRecord::NotObject(Value::from(42)));
        assert_eq!(recs[2].to_json(), r#"{"nested":{"x":1}}"#);
    }

    #[test]
    fn unicode_escapes_as_java_platforms_send_them_read_as_the_text() {
        // Many platforms escape every non-ASCII character (\uXXXX), keys
        // included, and an emoji in a comment comes as a surrogate pair.
        let text = r#"{"data":{"total":1,"records":[{"\u8bc4\u4ef7":"\u975e\u5e38\u6ee1\u610f","comment":" \ud83d\udc4d\u597d "}]}}"#;
        let p = pick(text, "data.records", "data.total").expect("page");
        let Some(Records::Array(recs)) = p.records else { panic!("records: {:?}", p.records) };
        let RawRecord::Object(fields) = &recs[0] else { panic!("object") };
        let text_of = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.text().into_owned());
        assert_eq!(text_of("评价").as_deref(), Some("非常满意"));
        assert_eq!(text_of("comment").as_deref(), Some("👍好"));
    }

    #[test]
    fn missing_null_and_broken_pages_read_as_a_value_would() {
        let p = pick(r#"{"data":{"records":null,"total":0}}"#, "data.records", "data.total").expect("page");
        assert_eq!((p.records, p.total), (Some(Records::Null), Some(Value::from(0))));
        let p = pick(r#"{"code":500,"msg":"busy"}"#, "data.records", "data.total").expect("page");
        assert_eq!((p.records, p.total), (None, None));
        let p = pick(r#"{"data":[1,2]}"#, "data.records", "data.total").expect("page");
        assert_eq!(p.records, None);
        let p = pick(r#"{"rows":{"a":1}}"#, "rows", "count").expect("page");
        assert_eq!(p.records, Some(Records::Other));
        let p = pick(r#"[{"a":1}]"#, "", "total").expect("page");
        assert!(matches!(p.records, Some(Records::Array(ref r)) if r.len() == 1));
        assert!(pick(r#"{"data":{"records":[{"a":1},"#, "data.records", "data.total").is_err());
        assert!(pick(r#"{"data":{}} trailing"#, "data.records", "data.total").is_err());
    }
}
