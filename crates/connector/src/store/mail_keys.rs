//! The two keys behind suppression hashes and mail tokens: random, made at
//! the store's first open, kept in `meta` sealed with the store key. Not
//! derived from the store key, because `rotate-key` changes that key while
//! every suppression hash and every token already mailed must keep working;
//! rotation re-seals them in the same step as the key check (`reseal`).

use super::engine::Table;
use rand::RngCore;
use secrecy::SecretBox;

use super::crypto::Sealer;
use super::error::{Result, StoreError};
use crate::domain::{Email, MailToken, PersonHash, TokenKind};

const NAMES: [&str; 2] = ["hash_key", "token_key"];

/// The keys, in memory only.
pub struct MailKeys {
    hash: SecretBox<[u8; 32]>,
    token: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for MailKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailKeys(..)")
    }
}

fn aad(name: &str) -> Vec<u8> {
    format!("meta/{name}").into_bytes()
}

fn load_or_make(meta: &Table, sealer: &Sealer, name: &str) -> Result<SecretBox<[u8; 32]>> {
    if let Some(sealed) = meta.get(name)? {
        let sealed = std::str::from_utf8(&sealed)
            .map_err(|_| StoreError::Corrupt(format!("meta/{name}")))?;
        let raw = sealer
            .open(sealed, &aad(name))
            .map_err(|e| StoreError::Corrupt(format!("meta/{name}: {e}")))?;
        let key: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("meta/{name}: not 32 bytes")))?;
        return Ok(SecretBox::new(Box::new(key)));
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    meta.insert(name, sealer.seal(&key, &aad(name)).as_bytes())?;
    meta.flush()?;
    Ok(SecretBox::new(Box::new(key)))
}

impl MailKeys {
    /// Read the keys from `meta`, making them if the store has none yet.
    pub(super) fn open(meta: &Table, sealer: &Sealer) -> Result<Self> {
        Ok(Self {
            hash: load_or_make(meta, sealer, NAMES[0])?,
            token: load_or_make(meta, sealer, NAMES[1])?,
        })
    }

    pub fn person(&self, email: &Email) -> PersonHash {
        PersonHash::of(&self.hash, email)
    }

    /// A keyed hash (HMAC-SHA256 with the hash key, hex) of `text` in
    /// `domain`: for index keys that would otherwise hold an address or an
    /// external ref in clear.
    pub fn keyed(&self, domain: &str, text: &str) -> String {
        hex::encode(self.keyed_bytes(domain, text))
    }

    /// [`MailKeys::keyed`] as its 32 bytes, where a key holds them raw.
    pub fn keyed_bytes(&self, domain: &str, text: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        use secrecy::ExposeSecret;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.hash.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(domain.as_bytes());
        mac.update(b"\0");
        mac.update(text.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn token(&self, kind: TokenKind, invitation: u64) -> String {
        MailToken::sign(&self.token, kind, invitation)
    }

    /// Any bytes in; `Some` only for a token of this store.
    pub fn parse_token(&self, raw: &[u8]) -> Option<MailToken> {
        MailToken::parse(&self.token, raw)
    }
}

/// For key rotation: the sealed keys re-sealed under `new`, as `(name,
/// value)` pairs to write in the key switch's transaction. A store without
/// them yet has nothing to re-seal.
pub(super) fn reseal(meta: &Table, old: &Sealer, new: &Sealer) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for name in NAMES {
        let Some(sealed) = meta.get(name)? else {
            continue;
        };
        let sealed = std::str::from_utf8(&sealed)
            .map_err(|_| StoreError::Corrupt(format!("meta/{name}")))?;
        // Resuming after the switch: already under the new key.
        let raw = match old.open(sealed, &aad(name)) {
            Ok(raw) => raw,
            Err(_) if new.open(sealed, &aad(name)).is_ok() => continue,
            Err(e) => return Err(StoreError::Corrupt(format!("meta/{name}: {e}"))),
        };
        out.push((name.to_string(), new.seal(&raw, &aad(name))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::Engine;

    #[test]
    fn made_once_kept_and_resealed() {
        let db = Engine::temporary();
        let meta = db.table("meta").unwrap();
        let old = Sealer::new(&SecretBox::new(Box::new([1; 32])));
        let new = Sealer::new(&SecretBox::new(Box::new([2; 32])));
        let a = MailKeys::open(&meta, &old).unwrap();
        let b = MailKeys::open(&meta, &old).unwrap();
        let email = Email::parse("a@example.com").unwrap();
        assert_eq!(a.person(&email), b.person(&email));
        let t = a.token(TokenKind::Unsubscribe, 5);
        for (name, value) in reseal(&meta, &old, &new).unwrap() {
            meta.insert(name, value.as_bytes()).unwrap();
        }
        let c = MailKeys::open(&meta, &new).unwrap();
        assert_eq!(c.person(&email), a.person(&email));
        assert_eq!(c.parse_token(t.as_bytes()).map(|t| t.invitation), Some(5));
        assert!(reseal(&meta, &old, &new).unwrap().is_empty());
    }
}
