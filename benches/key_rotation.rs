//! Store key rotation speed: members re-sealed per second by
//! `store::rotate_key` (what `mydex-connector rotate-key` runs), over a store
//! seeded with `BENCH_MEMBERS` members (default 100000) through
//! `Store::import_members`. Run with `cargo bench --bench key_rotation`.
//! Under `cargo test --all-targets` it makes a small smoke run instead.

use std::time::Instant;

use mydex_connector::store::{NewMember, Store};
use secrecy::{ExposeSecret, SecretBox};

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // too, without it, and then a small smoke run is enough.
    let full = std::env::args().any(|a| a == "--bench");
    let members: usize = if full {
        std::env::var("BENCH_MEMBERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000)
    } else {
        2_000
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let (old, new) = (
        SecretBox::new(Box::new([1u8; 32])),
        SecretBox::new(Box::new([2u8; 32])),
    );
    let ids: Vec<String> = (0..members)
        .map(|i| format!("{}-45678", 100_000 + i))
        .collect();
    let keys: Vec<String> = (0..members).map(|i| format!("member-key-{i:07}")).collect();
    let seeded = Instant::now();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = Store::open(&path, &old)?;
        let all: Vec<NewMember> = ids
            .iter()
            .zip(&keys)
            .map(|(c, k)| NewMember {
                uid: 1,
                connection_id: c.clone(),
                mydexid: None,
                email: None,
                key: k.clone(),
                version: 1,
                campaign: None,
            })
            .collect();
        for chunk in all.chunks(5_000) {
            store.import_members(chunk.to_vec()).await?;
        }
        store.flush().await?;
        anyhow::Ok(())
    })?;
    println!(
        "seeded {members} members in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );
    let (old_key, new_key) = (
        SecretBox::new(Box::new(*old.expose_secret())),
        SecretBox::new(Box::new(*new.expose_secret())),
    );
    let r = rt.block_on(Store::rotate_key(path.clone(), old_key, new_key, |_, _| {}))?;
    anyhow::ensure!(r.members_resealed == members as u64, "{r:?}");
    println!(
        "rotate_key: {members} member keys re-sealed in {:.2} s ({:.0} members/s, a flush per 1000)",
        r.elapsed.as_secs_f64(),
        members as f64 / r.elapsed.as_secs_f64()
    );
    let store = Store::open(&path, &new)?;
    let m = rt
        .block_on(store.member(&ids[members / 2]))?
        .ok_or_else(|| anyhow::anyhow!("member missing"))?;
    anyhow::ensure!(
        store
            .sealer()
            .open(&m.sealed_key, ids[members / 2].as_bytes())?
            == keys[members / 2].as_bytes()
    );
    Ok(())
}
