//! The merged tree of values read from the file and the environment, before it becomes a
//! [`Config`]: unknown keys and values of a wrong type are found here, every one of them, and
//! reported in the key table's order; values are found by key path and told where they came
//! from. It never applies defaults or checks ranges (serde and `checks.rs` do).

use std::path::Path;

use ::config::{Map, Value, ValueKind};
use serde::de::DeserializeOwned;

use super::error::Problem;
use super::keys::{
    expected_for, join_key, replaced_by, split_index, table_position, Accepts, Children, KeySpec,
};
use super::types::{BridgeConfig, Config};
use super::{ENV_LEVEL_SEPARATOR, ENV_PREFIX};

/// The `origin` the `config` crate gives values read from the environment.
const ENVIRONMENT_ORIGIN: &str = "the environment";

/// Removes every key of `table` that `specs` does not know (reported in `problems`), and every
/// value the file gives of a TOML type its key does not take (reported in `mistyped`, for
/// [`deserialize_config`]), at every level, so that all of them are reported at once and the
/// rest can still be checked.
pub fn remove_unknown_keys_and_wrong_types(
    table: &mut Map<String, Value>,
    specs: &'static [KeySpec],
    prefix: &str,
    file: Option<&Path>,
    problems: &mut Vec<Problem>,
    mistyped: &mut Vec<Problem>,
) {
    let mut unknown: Vec<String> = table
        .keys()
        .filter(|name| !specs.iter().any(|spec| spec.name == name.as_str()))
        .cloned()
        .collect();
    unknown.sort();
    for name in unknown {
        let key = join_key(prefix, &name);
        let origin = describe_origin(&key, table.remove(&name).as_ref(), file);
        if let Some(instead) = replaced_by(&key) {
            problems.push(Problem::ReplacedKey {
                origin,
                key,
                instead,
            });
            continue;
        }
        problems.push(Problem::UnknownKey {
            origin,
            key,
            allowed: specs.iter().map(|spec| spec.name.to_string()).collect(),
        });
    }
    for spec in specs {
        let Some(value) = table.get_mut(spec.name) else {
            continue;
        };
        let key = join_key(prefix, spec.name);
        if of_wrong_type(spec, value) {
            mistyped.push(Problem::BadValue {
                origin: describe_origin(&key, Some(value), file),
                value: render(value),
                expected: spec.accepts.to_string(),
                key,
            });
            table.remove(spec.name);
            continue;
        }
        match (&spec.children, &mut value.kind) {
            (Children::Table(keys), ValueKind::Table(inner)) => {
                remove_unknown_keys_and_wrong_types(inner, keys, &key, file, problems, mistyped);
            }
            (Children::TableList(keys), ValueKind::Array(items)) => {
                for (index, item) in items.iter_mut().enumerate() {
                    if let ValueKind::Table(inner) = &mut item.kind {
                        let item_key = format!("{key}[{index}]");
                        remove_unknown_keys_and_wrong_types(
                            inner, keys, &item_key, file, problems, mistyped,
                        );
                    }
                }
            }
            // A value of the wrong shape is reported by deserialization.
            _ => {}
        }
    }
}

/// Whether the file gives `value` for `spec` as a TOML type the key does not take. The
/// `config` crate would convert it silently (10.5 or `true` into an integer, 0 or `"off"` into
/// a boolean). A value from the environment is text, and converted as documented.
fn of_wrong_type(spec: &KeySpec, value: &Value) -> bool {
    if value.origin() == Some(ENVIRONMENT_ORIGIN) {
        return false;
    }
    match spec.accepts {
        Accepts::Integer(..) => !matches!(
            value.kind,
            ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_)
        ),
        Accepts::Boolean(_) => !matches!(value.kind, ValueKind::Boolean(_)),
        Accepts::Text(_) => false,
    }
}

/// The configuration in `tree`, with every value of a wrong type (or missing) added to
/// `problems` in the key table's order; `None` if there was any.
///
/// Serde stops at the first bad value, so each one found is removed (its default takes its
/// place) and the rest is tried again. Each listener, bridge and bridge topic rule is read on its
/// own, so that one whose required key is bad does not hide the problems of the others or of the
/// rest of the file.
pub fn deserialize_config(
    tree: &Value,
    file: Option<&Path>,
    mistyped: Vec<Problem>,
    problems: &mut Vec<Problem>,
) -> Option<Config> {
    let mut rest = tree.clone();
    let (listeners, bridges) = match &mut rest.kind {
        ValueKind::Table(table) => (table.remove("listeners"), table.remove("bridges")),
        _ => (None, None),
    };
    let mut found = mistyped;
    let config = deserialize_reporting::<Config>(rest, "", tree, file, &mut found);
    let listeners = listeners.map(|value| {
        deserialize_list(
            value,
            "listeners",
            tree,
            file,
            &mut found,
            deserialize_reporting,
        )
    });
    let bridges = bridges.map(|value| {
        deserialize_list(value, "bridges", tree, file, &mut found, deserialize_bridge)
    });
    if !found.is_empty() {
        // What was read in place of the bad values is no configuration to check.
        found.sort_by_cached_key(|problem| table_position(problem.key()));
        problems.extend(found);
        return None;
    }
    let mut config = config?;
    if let Some(listeners) = listeners {
        config.listeners = listeners?;
    }
    if let Some(bridges) = bridges {
        config.bridges = bridges?;
    }
    Some(config)
}

/// How one item of a list is read: the item, its key, the whole tree, the file, the problems.
type ReadItem<T> = fn(Value, &str, &Value, Option<&Path>, &mut Vec<Problem>) -> Option<T>;

/// Reads every item of the list `value` at `key` with `read_item` (or reports that it is not a
/// list).
fn deserialize_list<T: DeserializeOwned>(
    value: Value,
    key: &str,
    root: &Value,
    file: Option<&Path>,
    problems: &mut Vec<Problem>,
    read_item: ReadItem<T>,
) -> Option<Vec<T>> {
    let ValueKind::Array(items) = value.kind else {
        return deserialize_reporting(value, key, root, file, problems);
    };
    let read: Vec<Option<T>> = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| read_item(item, &format!("{key}[{index}]"), root, file, problems))
        .collect();
    read.into_iter().collect()
}

/// One bridge, its topic rules each read on their own.
fn deserialize_bridge(
    mut value: Value,
    key: &str,
    root: &Value,
    file: Option<&Path>,
    problems: &mut Vec<Problem>,
) -> Option<BridgeConfig> {
    let topics = match &mut value.kind {
        ValueKind::Table(table) => table.remove("topics"),
        _ => None,
    };
    let bridge = deserialize_reporting::<BridgeConfig>(value, key, root, file, problems);
    let topics = topics.map(|topics| {
        let key = format!("{key}.topics");
        deserialize_list(topics, &key, root, file, problems, deserialize_reporting)
    });
    let mut bridge = bridge?;
    if let Some(topics) = topics {
        bridge.topics = topics?;
    }
    Some(bridge)
}

/// Deserializes `value` (found at `prefix` in `root`), reporting each bad or missing value once
/// and removing it, until it deserializes or nothing more can be removed: a required key
/// missing at the top of `value`, which serde reports only after every other key.
fn deserialize_reporting<T: DeserializeOwned>(
    mut value: Value,
    prefix: &str,
    root: &Value,
    file: Option<&Path>,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    loop {
        let error = match value.clone().try_deserialize::<T>() {
            Ok(deserialized) => return Some(deserialized),
            Err(error) => error,
        };
        let (relative_key, problem) = deserialize_problem(error, prefix, root, file);
        // A required key removed before is now reported missing: said once is enough.
        if !problems.iter().any(|known| known.key() == problem.key()) {
            problems.push(problem);
        }
        // The bad value goes; a required one that is missing takes its table with it.
        let removed = remove_at(&mut value, &relative_key)
            || relative_key
                .rsplit_once('.')
                .is_some_and(|(parent, _)| remove_at(&mut value, parent));
        if !removed {
            return None;
        }
    }
}

/// The key (relative to the value deserialized, and with `prefix` for the report) and the
/// problem that serde's `error` is about.
fn deserialize_problem(
    error: ::config::ConfigError,
    prefix: &str,
    root: &Value,
    file: Option<&Path>,
) -> (String, Problem) {
    let (key, reason) = match error {
        ::config::ConfigError::Type { key, .. } => (key, None),
        ::config::ConfigError::NotFound(key) => (Some(key), None),
        ::config::ConfigError::At { error, key, .. } => (key, Some(error.to_string())),
        other => (None, Some(other.to_string())),
    };
    let relative_key = key.as_deref().map(normalize_key).unwrap_or_default();
    let key = join_key(prefix, &relative_key);
    let found = value_at(root, &key);
    // serde's note on a word that is none of a key's words names Rust's types ("enum
    // QueueFullPolicy does not have variant constructor …"): what is allowed says it all.
    let reason = reason.filter(|reason| !reason.contains("does not have variant constructor"));
    let expected = match reason {
        Some(reason) => format!("{} ({reason})", expected_for(&key)),
        None => expected_for(&key),
    };
    let problem = Problem::BadValue {
        origin: describe_origin(&key, found, file),
        value: found.map_or_else(|| "nothing".to_string(), render),
        key,
        expected,
    };
    (relative_key, problem)
}

/// The `config` crate writes `listeners[0]bind`; Cairn's messages say `listeners[0].bind`.
pub fn normalize_key(key: &str) -> String {
    let mut normalized = String::with_capacity(key.len() + 2);
    let mut after_index = false;
    for character in key.chars() {
        if after_index && character != '.' && character != '[' {
            normalized.push('.');
        }
        after_index = character == ']';
        normalized.push(character);
    }
    normalized
}

/// The value at a key path such as `listeners[0].tls.cert`.
pub fn value_at<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(root, |value, segment| {
        let (name, index) = split_index(segment);
        let ValueKind::Table(table) = &value.kind else {
            return None;
        };
        let child = table.get(name)?;
        match (index, &child.kind) {
            (None, _) => Some(child),
            (Some(index), ValueKind::Array(items)) => items.get(index),
            (Some(_), _) => None,
        }
    })
}

/// A value as it would be written in TOML, for messages.
fn render(value: &Value) -> String {
    match &value.kind {
        ValueKind::String(text) => format!("{text:?}"),
        ValueKind::Array(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Table(table) => {
            let mut entries: Vec<String> = table
                .iter()
                .map(|(name, value)| format!("{name} = {}", render(value)))
                .collect();
            entries.sort();
            format!("{{ {} }}", entries.join(", "))
        }
        ValueKind::Nil => "nothing".to_string(),
        scalar => scalar.to_string(),
    }
}

/// Removes the value at a key path such as `tls.cert` (not a list item); whether there was one.
fn remove_at(root: &mut Value, key: &str) -> bool {
    let (parent, name) = match key.rsplit_once('.') {
        Some((parent, name)) => (parent_mut(root, parent), name),
        None => (Some(root), key),
    };
    match parent.map(|parent| &mut parent.kind) {
        Some(ValueKind::Table(table)) if !name.is_empty() => table.remove(name).is_some(),
        _ => false,
    }
}

/// The table at a key path of table names (no list items).
fn parent_mut<'a>(root: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    key.split('.')
        .try_fold(root, |value, name| match &mut value.kind {
            ValueKind::Table(table) => table.get_mut(name),
            _ => None,
        })
}

/// Where the value at `key` came from, for messages: the environment variable's name or the
/// file. A table made from environment variables has no origin of its own
/// (`CAIRN_LISTENERS__0__BIND` makes `listeners`, a table): its first value that has one names
/// the variable.
pub fn describe_origin(key: &str, value: Option<&Value>, file: Option<&Path>) -> Option<String> {
    match value.and_then(|value| first_origin(key, value)) {
        Some((leaf_key, ENVIRONMENT_ORIGIN)) => {
            Some(format!("environment variable {}", env_var_name(&leaf_key)))
        }
        _ => file.map(|path| path.display().to_string()),
    }
}

/// The key and origin of `value` (at `key`), or of the first value in it that has one, by name.
fn first_origin<'v>(key: &str, value: &'v Value) -> Option<(String, &'v str)> {
    if let Some(origin) = value.origin() {
        return Some((key.to_string(), origin));
    }
    let ValueKind::Table(table) = &value.kind else {
        return None;
    };
    let mut names: Vec<&String> = table.keys().collect();
    names.sort();
    names
        .into_iter()
        .find_map(|name| first_origin(&join_key(key, name), &table[name]))
}

/// The environment variable that sets `key`, e.g. `CAIRN_LIMITS__MAX_INFLIGHT`.
pub fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', ENV_LEVEL_SEPARATOR).to_uppercase()
    )
}
