//! User and group names for ownership, as `rsync -a` preserves it.
//!
//! Two machines rarely agree on numeric ids, so ownership travels by name
//! (`alice`, `staff`) and each side maps names to its own ids, falling back to
//! the number when a name is unknown. The lookups go through NSS (`/etc/passwd`,
//! LDAP, ...), which can be slow, and a tree repeats a handful of owners many
//! times, so every answer is cached for the life of the process, misses too.
//! Only root may give files away, hence [`is_root`].
//!
//! Names are bytes on the wire, but the NSS bindings used here (`nix`) hand
//! out UTF-8 strings, replacing invalid bytes: a name that is not valid UTF-8
//! is treated as unknown rather than passed on altered.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use nix::unistd::{Gid, Group, Uid, User};

/// Whether this process runs with effective user id 0 (and so may chown,
/// create devices and manage `trusted.*` attributes). Not cached: the answer
/// is per thread on Linux and a thread may drop privileges.
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Answers so far, misses included.
#[derive(Debug, Default)]
struct Cache {
    user_names: HashMap<u32, Option<Vec<u8>>>,
    group_names: HashMap<u32, Option<Vec<u8>>>,
    uids: HashMap<Vec<u8>, Option<u32>>,
    gids: HashMap<Vec<u8>, Option<u32>>,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);

/// Looks `key` up in the map `pick` chooses, or asks `lookup` (with the lock
/// released: NSS may take a while) and remembers the answer. A failed lookup
/// (an NSS error, not "no such entry") is not remembered.
fn cached<K, V>(
    pick: impl Fn(&mut Cache) -> &mut HashMap<K, Option<V>>,
    key: K,
    lookup: impl FnOnce(&K) -> nix::Result<Option<V>>,
) -> Option<V>
where
    K: std::hash::Hash + Eq,
    V: Clone,
{
    let lock = || {
        CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some(hit) = pick(&mut lock()).get(&key) {
        return hit.clone();
    }
    let found = lookup(&key).ok()?;
    pick(&mut lock()).insert(key, found.clone());
    found
}

/// A name exactly as NSS has it, or `None` if `nix` had to alter it.
fn exact(name: String) -> Option<Vec<u8>> {
    (!name.contains(char::REPLACEMENT_CHARACTER)).then(|| name.into_bytes())
}

/// The name of user `uid`, if it has one.
pub(crate) fn user_name(uid: u32) -> Option<Vec<u8>> {
    cached(
        |c| &mut c.user_names,
        uid,
        |&uid| User::from_uid(Uid::from_raw(uid)).map(|u| u.and_then(|u| exact(u.name))),
    )
}

/// The name of group `gid`, if it has one.
pub(crate) fn group_name(gid: u32) -> Option<Vec<u8>> {
    cached(
        |c| &mut c.group_names,
        gid,
        |&gid| Group::from_gid(Gid::from_raw(gid)).map(|g| g.and_then(|g| exact(g.name))),
    )
}

/// The id of the user called `name`, if there is one.
pub(crate) fn uid_by_name(name: &[u8]) -> Option<u32> {
    cached(
        |c| &mut c.uids,
        name.to_vec(),
        |name| match std::str::from_utf8(name) {
            Ok(name) => User::from_name(name).map(|u| u.map(|u| u.uid.as_raw())),
            Err(_) => Ok(None),
        },
    )
}

/// The id of the group called `name`, if there is one.
pub(crate) fn gid_by_name(name: &[u8]) -> Option<u32> {
    cached(
        |c| &mut c.gids,
        name.to_vec(),
        |name| match std::str::from_utf8(name) {
            Ok(name) => Group::from_name(name).map(|g| g.map(|g| g.gid.as_raw())),
            Err(_) => Ok(None),
        },
    )
}

/// `--chown USER:GROUP` (or `USER`, or `:GROUP`), as rsync's: the owner and
/// group every entry gets on the receiving side (which must run as root to
/// give files away). Names or numbers; the receiver looks names up in its own
/// user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chown {
    user: Option<String>,
    group: Option<String>,
}

impl Chown {
    /// Parses `USER`, `USER:GROUP` or `:GROUP`.
    pub fn parse(spec: &str) -> Result<Chown, String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let part = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let chown = Chown {
            user: part(user),
            group: group.and_then(part),
        };
        if chown.user.is_none() && chown.group.is_none() {
            return Err(format!("--chown {spec:?}: give USER, USER:GROUP or :GROUP"));
        }
        Ok(chown)
    }

    /// The ids to give away to, looked up here: a number is taken as it is,
    /// a name must exist.
    pub(crate) fn resolve(&self) -> Result<(Option<u32>, Option<u32>), String> {
        let id = |name: &Option<String>, what: &str, lookup: fn(&[u8]) -> Option<u32>| {
            name.as_ref()
                .map(|n| {
                    n.parse::<u32>()
                        .ok()
                        .or_else(|| lookup(n.as_bytes()))
                        .ok_or_else(|| format!("--chown: no {what} called {n:?} here"))
                })
                .transpose()
        };
        Ok((
            id(&self.user, "user", uid_by_name)?,
            id(&self.group, "group", gid_by_name)?,
        ))
    }
}

/// `--usermap` or `--groupmap`, as rsync's: comma-separated `FROM:TO`
/// pairs, the first that matches a sender's owner wins. FROM is a name or a
/// wildcard (`*`, `?`, `[...]`) matched against the sender's names (`*` also
/// matches owners without one), a number, or a range `LOW-HIGH` of the
/// sender's ids; TO a name or a number on the receiving side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    text: String,
    pairs: Vec<(IdFrom, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum IdFrom {
    Ids(u32, u32),
    Names(String),
}

impl IdMap {
    /// Parses `FROM:TO[,FROM:TO...]`.
    pub fn parse(spec: &str) -> Result<IdMap, String> {
        let bad = |why: &str| format!("{spec:?}: {why}");
        let mut pairs = Vec::new();
        for pair in spec.split(',') {
            let (from, to) = pair
                .rsplit_once(':')
                .ok_or_else(|| bad("expected FROM:TO"))?;
            if from.is_empty() || to.is_empty() {
                return Err(bad("expected FROM:TO"));
            }
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            let number = |s: &str| digits(s).then(|| s.parse::<u32>().ok()).flatten();
            let range = from.split_once('-').map(|(a, b)| (number(a), number(b)));
            let from = match (number(from), range) {
                (Some(n), _) => IdFrom::Ids(n, n),
                (None, Some((Some(low), Some(high)))) if low <= high => IdFrom::Ids(low, high),
                (None, Some((Some(_), Some(_)))) => {
                    return Err(bad("a range LOW-HIGH runs upwards"))
                }
                // A name does not start with a digit: `1000-`, `1-x`, `99999999999`.
                _ if from.starts_with(|c: char| c.is_ascii_digit()) => {
                    return Err(bad("expected an id, a range LOW-HIGH or a name"))
                }
                _ => {
                    name_glob(from).map_err(|e| bad(&e))?;
                    IdFrom::Names(from.to_string())
                }
            };
            pairs.push((from, to.to_string()));
        }
        Ok(IdMap {
            text: spec.to_string(),
            pairs,
        })
    }

    /// The map with each TO looked up here (`lookup` for names; a name that
    /// does not exist here fails, naming `what`).
    pub(crate) fn resolve(
        &self,
        what: &str,
        lookup: fn(&[u8]) -> Option<u32>,
    ) -> Result<ResolvedIdMap, String> {
        let mut rules = Vec::new();
        for (from, to) in &self.pairs {
            let id = to
                .parse::<u32>()
                .ok()
                .or_else(|| lookup(to.as_bytes()))
                .ok_or_else(|| format!("{}: no {what} called {to:?} here", self.text))?;
            let from = match from {
                IdFrom::Ids(low, high) => MapFrom::Ids(*low, *high),
                IdFrom::Names(p) if p == "*" => MapFrom::All,
                IdFrom::Names(p) => MapFrom::Names(name_glob(p)?.compile_matcher()),
            };
            rules.push((from, id));
        }
        Ok(ResolvedIdMap(rules))
    }
}

impl std::fmt::Display for IdMap {
    /// The form [`IdMap::parse`] takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A FROM name as a glob: `*`, `?` and `[...]`; braces are literal, as in
/// rsync (globset would read `{a,b}` as alternatives).
fn name_glob(pattern: &str) -> Result<globset::Glob, String> {
    let escaped = pattern.replace('{', "[{]").replace('}', "[}]");
    globset::Glob::new(&escaped).map_err(|e| e.kind().to_string())
}

/// An [`IdMap`] ready to map: TO as local ids, wildcards compiled.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedIdMap(Vec<(MapFrom, u32)>);

#[derive(Debug, Clone)]
enum MapFrom {
    Ids(u32, u32),
    All,
    Names(globset::GlobMatcher),
}

impl ResolvedIdMap {
    /// The local id for the sender's `id` (named `name` there, if it is);
    /// `None` when no pair matches.
    pub(crate) fn map(&self, id: u32, name: Option<&[u8]>) -> Option<u32> {
        self.0.iter().find_map(|(from, to)| {
            let hit = match from {
                MapFrom::Ids(low, high) => (*low..=*high).contains(&id),
                MapFrom::All => true,
                MapFrom::Names(m) => {
                    name.is_some_and(|n| m.is_match_candidate(&globset::Candidate::from_bytes(n)))
                }
            };
            hit.then_some(*to)
        })
    }
}

impl std::fmt::Display for Chown {
    /// The form [`Chown::parse`] takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.user.as_deref().unwrap_or("");
        match &self.group {
            Some(g) => write!(f, "{user}:{g}"),
            None => f.write_str(user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_reads_user_group_and_numbers() {
        let c = Chown::parse("root:root").unwrap();
        assert_eq!(c.resolve(), Ok((Some(0), Some(0))));
        assert_eq!(Chown::parse(&c.to_string()), Ok(c));
        assert_eq!(
            Chown::parse("1234").unwrap().resolve(),
            Ok((Some(1234), None))
        );
        let g = Chown::parse(":77").unwrap();
        assert_eq!(g.resolve(), Ok((None, Some(77))));
        assert_eq!(g.to_string(), ":77");
        assert!(Chown::parse(":").is_err() && Chown::parse("").is_err());
        let e = Chown::parse("no-such-user-here:root")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.contains("no user called \"no-such-user-here\""), "{e}");
    }

    #[test]
    fn id_maps_take_names_wildcards_numbers_and_ranges() {
        let m = IdMap::parse("10-20:5,root:1234,ad*:7,99:root,*:4321").unwrap();
        assert_eq!(m.to_string(), "10-20:5,root:1234,ad*:7,99:root,*:4321");
        let r = m.resolve("user", uid_by_name).unwrap();
        assert_eq!(r.map(15, Some(b"x")), Some(5));
        assert_eq!(r.map(0, Some(b"root")), Some(1234));
        assert_eq!(r.map(3, Some(b"admin")), Some(7));
        assert_eq!(r.map(99, None), Some(0));
        assert_eq!(r.map(42, None), Some(4321), "* takes owners without names");
        let none = IdMap::parse("bob:1")
            .unwrap()
            .resolve("user", uid_by_name)
            .unwrap();
        assert_eq!(none.map(0, Some(b"root")), None);
        assert_eq!(none.map(0, None), None);
        let plus = IdMap::parse("+5:1")
            .unwrap()
            .resolve("user", uid_by_name)
            .unwrap();
        assert_eq!(plus.map(5, None), None, "+5 is a name, not the id 5");
        let braces = IdMap::parse("{ab}:5")
            .unwrap()
            .resolve("user", uid_by_name)
            .unwrap();
        assert_eq!(braces.map(1, Some(b"ab")), None);
        assert_eq!(braces.map(1, Some(b"{ab}")), Some(5));
        for bad in [
            "",
            "x",
            ":1",
            "a:",
            "20-10:1",
            "a[:1",
            "1000-:1",
            "1-x:1",
            "99999999999:1",
        ] {
            assert!(IdMap::parse(bad).is_err(), "{bad}");
        }
        let e = IdMap::parse("*:no-such-user-here")
            .unwrap()
            .resolve("user", uid_by_name);
        assert!(e
            .unwrap_err()
            .contains("no user called \"no-such-user-here\""));
    }

    #[test]
    fn root_maps_both_ways() {
        for _ in 0..2 {
            // The second round is answered from the cache.
            assert_eq!(user_name(0).as_deref(), Some(&b"root"[..]));
            assert_eq!(group_name(0).as_deref(), Some(&b"root"[..]));
            assert_eq!(uid_by_name(b"root"), Some(0));
            assert_eq!(gid_by_name(b"root"), Some(0));
        }
    }

    #[test]
    fn unknown_and_odd_names_are_none() {
        for name in [
            &b"no-such-user-jsync-test"[..],
            b"bad\0name",
            b"caf\xe9",
            b"",
        ] {
            assert_eq!(uid_by_name(name), None, "{name:?}");
            assert_eq!(gid_by_name(name), None, "{name:?}");
        }
        assert_eq!(user_name(u32::MAX - 7), None);
        assert_eq!(group_name(u32::MAX - 7), None);
    }

    #[test]
    fn is_root_matches_the_effective_uid() {
        assert_eq!(is_root(), rustix::process::geteuid().as_raw() == 0);
    }
}
