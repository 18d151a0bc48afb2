//! The two ids every layer passes around, as types: a [`ProfileId`] is never mistaken for
//! an identifier key, nor either for free text.
//!
//! Both are strings underneath (`serde(transparent)`: the same bytes on disk, in the
//! graph databases and in the API as before they were types), dereference to `str` for
//! reading, and borrow as `str` so maps keyed by them can be queried with a plain `&str`.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl From<&String> for $name {
            fn from(s: &String) -> Self {
                $name(s.clone())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

string_id!(
    /// Stable profile id, e.g. `p_000000000001`. A profile absorbed by a merge keeps its
    /// id as an alias of the survivor.
    ProfileId
);

string_id!(
    /// Canonical identifier key `kind:value`, the value already normalized. Kinds never
    /// contain `:`.
    IdentKey
);

impl ProfileId {
    /// The id of the `seq`-th profile created.
    pub fn from_seq(seq: u64) -> ProfileId {
        ProfileId(format!("p_{seq:012}"))
    }
}

impl IdentKey {
    /// The key of an identifier of `kind` with the (normalized) `value`.
    pub fn new(kind: &str, value: &str) -> IdentKey {
        IdentKey(format!("{kind}:{value}"))
    }

    /// The kind part (`email` of `email:ann@example.com`).
    pub fn kind(&self) -> &str {
        split_key(&self.0).0
    }

    /// The value part.
    pub fn value(&self) -> &str {
        split_key(&self.0).1
    }
}

/// Builds the canonical key of an identifier.
pub fn ident_key(kind: &str, value: &str) -> IdentKey {
    IdentKey::new(kind, value)
}

/// Splits a canonical key into (kind, value). Kinds never contain ':'.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once(':').unwrap_or((key, ""))
}

/// The two identifiers of an edge in canonical order.
pub fn edge_pair(a: &str, b: &str) -> (IdentKey, IdentKey) {
    ordered_pair(a, b)
}

/// Two ids in canonical (ascending) order, for pairs that are the same either way round.
pub fn ordered_pair<T: for<'a> From<&'a str>>(a: &str, b: &str) -> (T, T) {
    if a <= b {
        (a.into(), b.into())
    } else {
        (b.into(), a.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ids_serialize_as_plain_strings_and_look_up_by_str() {
        let id = ProfileId::from_seq(42);
        assert_eq!(id, "p_000000000042");
        assert_eq!(
            serde_json::to_string(&id).ok().as_deref(),
            Some("\"p_000000000042\"")
        );
        let back: ProfileId = serde_json::from_str("\"p_000000000042\"").unwrap_or_default();
        assert_eq!(back, id);
        let mut map = HashMap::new();
        map.insert(id.clone(), 1);
        assert_eq!(map.get("p_000000000042"), Some(&1));
    }

    #[test]
    fn an_identifier_key_splits_at_its_first_colon() {
        let key = ident_key("email", "a:b@example.com");
        assert_eq!(key.kind(), "email");
        assert_eq!(key.value(), "a:b@example.com");
        assert_eq!(
            edge_pair("phone:1", "email:x"),
            (IdentKey::from("email:x"), IdentKey::from("phone:1"))
        );
    }
}
