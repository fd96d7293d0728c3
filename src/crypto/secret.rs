//! `Secret<T>`: a value that never shows itself by accident. `Debug`, `Display` and
//! `Serialize` all print a fixed mask, so a secret inside a config struct, a log field or an
//! admin response cannot leak. Reading it takes an explicit `expose()`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// What every masked secret prints as.
pub const MASK: &str = "********";

/// A secret value. Only [`Secret::expose`] and [`Secret::into_inner`] reveal it.
#[derive(Clone, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The plain value. Every call site is a place where the secret may leave the wrapper.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

/// Deserializes the plain value (config files, request bodies) and wraps it.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}

/// Compares in constant time (only the lengths may leak).
impl<T: AsRef<[u8]>> PartialEq for Secret<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_ref().ct_eq(other.0.as_ref()).into()
    }
}

impl<T: AsRef<[u8]>> Eq for Secret<T> {}

/// The tail of a secret that may be shown to help tell secrets apart: the last 4
/// characters, the last 2 for secrets of 9 to 12 characters, nothing for 8 or fewer.
/// Counts characters, not bytes.
pub fn mask_hint(secret: &str) -> String {
    let len = secret.chars().count();
    let shown = match len {
        0..=8 => 0,
        9..=12 => 2,
        _ => 4,
    };
    secret.chars().skip(len - shown).collect()
}

/// The display form of a masked secret: `********` followed by its hint.
pub fn masked(hint: &str) -> String {
    format!("{MASK}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_display_and_serialize_are_masked() {
        let s = Secret::new("sk-live-abcdef".to_string());
        assert_eq!(format!("{s:?}"), "********");
        assert_eq!(format!("{s}"), "********");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"********\"");

        #[derive(Debug, Serialize)]
        struct Holder {
            key: Secret<String>,
        }
        let h = Holder { key: s.clone() };
        assert!(!format!("{h:?}").contains("abcdef"));
        assert!(!format!("{h:#?}").contains("abcdef"));
        assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"key":"********"}"#);
        assert_eq!(s.expose(), "sk-live-abcdef");
        assert_eq!(s.into_inner(), "sk-live-abcdef");
    }

    #[test]
    fn deserialize_wraps_plain_value() {
        let s: Secret<String> = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(s, Secret::new("hunter2".to_string()));
        assert_ne!(s, Secret::new("hunter3".to_string()));
        assert_ne!(s, Secret::new("hunter".to_string()));
        let n: Secret<u32> = serde_json::from_str("7").unwrap();
        assert_eq!(*n.expose(), 7);
    }

    #[test]
    fn mask_hint_lengths() {
        assert_eq!(mask_hint(""), "");
        assert_eq!(mask_hint("12345678"), "");
        assert_eq!(mask_hint("123456789"), "89");
        assert_eq!(mask_hint("123456789012"), "12");
        assert_eq!(mask_hint("1234567890123"), "0123");
        assert_eq!(mask_hint("sk-proj-abcdefghijklmnop"), "mnop");
    }

    #[test]
    fn mask_hint_is_unicode_safe() {
        // 8 chars, 16+ bytes: nothing shown.
        assert_eq!(mask_hint("ééééééé€"), "");
        // 13 chars: last 4 chars, not bytes.
        assert_eq!(mask_hint("abcdefghiéü€😀"), "éü€😀");
        assert_eq!(mask_hint("abcdefgh€😀"), "€😀");
    }

    #[test]
    fn masked_prefixes_the_mask() {
        assert_eq!(masked("mnop"), "********mnop");
        assert_eq!(masked(""), "********");
    }
}
