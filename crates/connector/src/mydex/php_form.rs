//! PHP-style bracketed form bodies (`fields[a][0][][access][r][a]=1`), as
//! older Mydex integrations send callbacks, turned into a JSON value so the
//! JSON and form paths share one parser. A `[]` at the end of a key appends
//! to a list; inside a key it is the empty-string key `""`, as Mydex's
//! `fields` use it. Bounded: depth, pairs, sizes.

use serde_json::{Map, Value};

const MAX_DEPTH: usize = 10;
const MAX_PAIRS: usize = 2_000;
const MAX_KEY: usize = 512;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormError {
    #[error("form body is not valid UTF-8")]
    Utf8,
    #[error("more than {MAX_PAIRS} form fields")]
    TooManyPairs,
    #[error("form key {0:?} is malformed")]
    BadKey(String),
    #[error("form key {0:?} nests deeper than {MAX_DEPTH}")]
    TooDeep(String),
    #[error("form key {0:?} is used both as a value and as a structure")]
    Clash(String),
}

/// Parse `application/x-www-form-urlencoded` with bracket nesting.
pub fn parse(body: &[u8]) -> Result<Value, FormError> {
    std::str::from_utf8(body).map_err(|_| FormError::Utf8)?;
    let mut root = Value::Object(Map::new());
    for (n, (key, value)) in form_urlencoded::parse(body).enumerate() {
        if n >= MAX_PAIRS {
            return Err(FormError::TooManyPairs);
        }
        let short = || key.chars().take(80).collect::<String>();
        if key.len() > MAX_KEY || key.is_empty() {
            return Err(FormError::BadKey(short()));
        }
        let (base, rest) = match key.find('[') {
            Some(i) => (&key[..i], &key[i..]),
            None => (&key[..], ""),
        };
        if base.is_empty() {
            return Err(FormError::BadKey(short()));
        }
        let mut segments = vec![base.to_string()];
        let mut rest = rest;
        while !rest.is_empty() {
            let inner = rest
                .strip_prefix('[')
                .ok_or_else(|| FormError::BadKey(short()))?;
            let close = inner.find(']').ok_or_else(|| FormError::BadKey(short()))?;
            segments.push(inner[..close].to_string());
            rest = &inner[close + 1..];
        }
        if segments.len() > MAX_DEPTH {
            return Err(FormError::TooDeep(short()));
        }
        insert(&mut root, &segments, Value::String(value.into_owned()))
            .map_err(|_| FormError::Clash(short()))?;
    }
    Ok(root)
}

fn insert(node: &mut Value, path: &[String], value: Value) -> Result<(), ()> {
    let Some((head, tail)) = path.split_first() else {
        return Err(());
    };
    if head.is_empty() {
        match node {
            // `a[]=1&a[]=2`: a list, PHP's append.
            Value::Array(arr) => {
                if tail.is_empty() {
                    arr.push(value);
                } else {
                    let mut child = Value::Object(Map::new());
                    insert(&mut child, tail, value)?;
                    arr.push(child);
                }
                return Ok(());
            }
            Value::Object(m) if m.is_empty() && tail.is_empty() => {
                *node = Value::Array(vec![value]);
                return Ok(());
            }
            // `fields[x][0][][access][r][a]=1`: Mydex's `[]` inside a
            // structure is the empty-string key (docs/mydex-contract.md §5),
            // so the pairs that share it merge into one `""` object.
            Value::Object(_) => {}
            _ => return Err(()),
        }
    }
    let map = match node {
        Value::Object(m) => m,
        _ => return Err(()),
    };
    if tail.is_empty() {
        if map.get(head).is_some_and(|v| !v.is_string()) {
            return Err(());
        }
        map.insert(head.clone(), value);
        return Ok(());
    }
    let child = map
        .entry(head.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if child.is_string() {
        return Err(());
    }
    insert(child, tail, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_example() {
        let body = b"connection_id=123-3736&uid=1&mydexid=RBFish123&key=CJqV&fields[field_ds_personal_details][0][][access][r][a]=1";
        let v = parse(body).unwrap();
        assert_eq!(v["connection_id"], "123-3736");
        assert_eq!(v["uid"], "1");
        assert_eq!(
            v["fields"]["field_ds_personal_details"]["0"],
            json!({"": {"access": {"r": {"a": "1"}}}})
        );
    }

    #[test]
    fn empty_keys_merge_with_value_attributes() {
        let body = b"fields[field_ds_personal_details][0][][access][r][a]=1&fields[field_ds_personal_details][0][][access][r][s]=A&fields[field_ds_personal_details][0][][access][w][a]=0&fields[field_ds_personal_details][0][][value]=Robert";
        assert_eq!(
            parse(body).unwrap(),
            json!({"fields": {"field_ds_personal_details": {"0": {"": {
                "access": {"r": {"a": "1", "s": "A"}, "w": {"a": "0"}},
                "value": "Robert"
            }}}}})
        );
    }

    #[test]
    fn hostile_forms() {
        assert!(matches!(parse(b"a[b=1"), Err(FormError::BadKey(_))));
        assert!(matches!(parse(b"[x]=1"), Err(FormError::BadKey(_))));
        assert!(matches!(parse(b"a=1&a[b]=2"), Err(FormError::Clash(_))));
        assert!(matches!(parse(b"a[b]=2&a=1"), Err(FormError::Clash(_))));
        assert!(matches!(
            parse(b"a[b][c][d][e][f][g][h][i][j][k]=1"),
            Err(FormError::TooDeep(_))
        ));
        assert_eq!(parse(&[0xff, 0xfe]), Err(FormError::Utf8));
        let many = (0..3000)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(parse(many.as_bytes()), Err(FormError::TooManyPairs));
        assert_eq!(parse(b"a[]=1&a[]=2").unwrap(), json!({"a": ["1", "2"]}));
    }
}
