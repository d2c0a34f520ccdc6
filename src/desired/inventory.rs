//! `inventory.yaml`: the run-wide guards and, per kind, the section that lists its targets
//! (their addresses and how to reach them). Resource files name targets from here; a reference
//! to an undefined target is an error.
//!
//! The sections are the kinds' own ([`crate::kinds::KindDef::SECTION`] and `TargetSpec`): the
//! file is parsed once, each section with its kind's types, and its JSON Schema is assembled
//! from theirs.

use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use crate::kinds::Sections;
pub use crate::ownership::Guards;

/// The inventory file as written.
pub struct InventoryFile {
    /// Limits that stop a truncated or mistaken file from wiping a device.
    pub guards: Guards,
    /// Let this file hold `{ inline: ... }` credentials (each one is warned about).
    pub allow_inline_secrets: bool,
    /// Every kind's section, typed.
    pub(crate) sections: Sections,
    /// How `wispctl reconcile` runs.
    pub reconcile: Option<crate::controller::config::ReconcileSpec>,
}

const GUARDS: &str = "guards";
const ALLOW_INLINE: &str = "allow_inline_secrets";
const RECONCILE: &str = "reconcile";

/// Every key the top level takes, for "unknown field" messages.
fn keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let mut k = vec![GUARDS];
        k.extend_from_slice(Sections::KEYS);
        k.push(ALLOW_INLINE);
        k.push(RECONCILE);
        k
    })
}

impl<'de> Deserialize<'de> for InventoryFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InventoryFile;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the inventory: a mapping of guards and target sections")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InventoryFile, A::Error> {
                let mut guards = None;
                let mut inline = None;
                let mut reconcile = None;
                let mut sections = Sections::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        GUARDS if guards.is_some() => {
                            return Err(serde::de::Error::duplicate_field(GUARDS));
                        }
                        GUARDS => guards = Some(map.next_value()?),
                        ALLOW_INLINE if inline.is_some() => {
                            return Err(serde::de::Error::duplicate_field(ALLOW_INLINE));
                        }
                        ALLOW_INLINE => inline = Some(map.next_value()?),
                        RECONCILE if reconcile.is_some() => {
                            return Err(serde::de::Error::duplicate_field(RECONCILE));
                        }
                        RECONCILE => reconcile = Some(map.next_value()?),
                        other => {
                            if !sections.take(other, &mut map)? {
                                return Err(serde::de::Error::unknown_field(other, keys()));
                            }
                        }
                    }
                }
                Ok(InventoryFile {
                    guards: guards.unwrap_or_default(),
                    allow_inline_secrets: inline.unwrap_or(false),
                    sections,
                    reconcile,
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl JsonSchema for InventoryFile {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "InventoryFile".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut properties = serde_json::Map::new();
        let mut guards = generator.subschema_for::<Guards>();
        guards.insert(
            "description".into(),
            "Limits that stop a truncated or mistaken file from wiping a device.".into(),
        );
        guards.insert("default".into(), serde_json::json!({ "max_deletes": 10 }));
        properties.insert(GUARDS.into(), guards.into());
        for kind in crate::kinds::ALL {
            properties.insert(kind.section().into(), kind.section_schema(generator).into());
        }
        let mut reconcile = generator.subschema_for::<crate::controller::config::ReconcileSpec>();
        reconcile.insert(
            "description".into(),
            "How `wispctl reconcile` runs: per kind or target a mode (observe or apply) and an interval, maintenance windows, notifications.".into(),
        );
        properties.insert(RECONCILE.into(), reconcile.into());
        properties.insert(
            ALLOW_INLINE.into(),
            serde_json::json!({
                "description": "Let this file hold `{ inline: ... }` credentials (each one is warned about).",
                "type": "boolean",
                "default": false
            }),
        );
        schemars::json_schema!({
            "description": "The inventory file as written: run-wide guards and, per kind, its targets by name.",
            "type": "object",
            "properties": properties,
            "additionalProperties": false
        })
    }
}
