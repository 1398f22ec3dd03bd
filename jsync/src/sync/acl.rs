//! POSIX ACLs for `-A`, as rsync's `-A` keeps them.
//!
//! Linux hands ACLs out as two extended attributes, `system.posix_acl_access`
//! (a file's or directory's own) and `system.posix_acl_default` (what a
//! directory gives what is made in it), so they travel in an entry's
//! extended attributes like `-X`'s. What is particular to them is kept here:
//! which names they are, and the user and group ids inside their values.
//! Those ids are the sender's; as for owners, the receiver maps them to its
//! own by name (the sender sends the names of the ids it finds in them),
//! by `--usermap`/`--groupmap`, or keeps the number.
//!
//! A value is the kernel's `posix_acl_xattr` layout: a little-endian u32
//! version (2), then 8-byte entries of a u16 tag, a u16 permission set and
//! a u32 id (meaningful for named users and groups only).

/// A file's or directory's own ACL.
pub(crate) const ACCESS: &[u8] = b"system.posix_acl_access";
/// A directory's default ACL.
pub(crate) const DEFAULT: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const HEADER: usize = 4;
const ENTRY: usize = 8;
/// `ACL_USER`: an entry for a named user.
const TAG_USER: u16 = 0x02;
/// `ACL_GROUP`: an entry for a named group.
const TAG_GROUP: u16 = 0x08;

/// Whether an extended attribute name is an ACL's.
pub(crate) fn is_acl(name: &[u8]) -> bool {
    name == ACCESS || name == DEFAULT
}

/// The entries of an ACL value as (tag, permissions, id); `None` when it is
/// not the layout this module knows (the kernel then judges it).
fn entries(value: &[u8]) -> Option<Vec<(u16, u16, u32)>> {
    let (head, body) = value.split_at_checked(HEADER)?;
    if u32::from_le_bytes(head.try_into().ok()?) != VERSION || body.len() % ENTRY != 0 {
        return None;
    }
    let out = body
        .chunks_exact(ENTRY)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect();
    Some(out)
}

/// The user ids (named users) and group ids (named groups) an ACL value
/// holds.
pub(crate) fn ids(value: &[u8]) -> (Vec<u32>, Vec<u32>) {
    let (mut users, mut groups) = (Vec::new(), Vec::new());
    for (tag, _, id) in entries(value).unwrap_or_default() {
        match tag {
            TAG_USER => users.push(id),
            TAG_GROUP => groups.push(id),
            _ => {}
        }
    }
    (users, groups)
}

/// `value` with each named user's id given by `user` and each named
/// group's by `group`, its entries in the order the kernel and `setfacl`
/// keep (by tag, then id), so the same ACL always reads back as the same
/// bytes. A value of another layout is returned as it is.
pub(crate) fn map_ids(
    value: &[u8],
    user: impl Fn(u32) -> u32,
    group: impl Fn(u32) -> u32,
) -> Vec<u8> {
    let Some(mut list) = entries(value) else {
        return value.to_vec();
    };
    for (tag, _, id) in &mut list {
        match *tag {
            TAG_USER => *id = user(*id),
            TAG_GROUP => *id = group(*id),
            _ => {}
        }
    }
    list.sort_by_key(|&(tag, _, id)| (tag, id));
    let mut out = Vec::with_capacity(value.len());
    out.extend_from_slice(&VERSION.to_le_bytes());
    for (tag, perm, id) in list {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ACL value from (tag, permissions, id) entries, in the order given.
    pub(crate) fn value(list: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut out = VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in list {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&perm.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    const NONE: u32 = u32::MAX;

    #[test]
    fn named_ids_are_found_and_mapped_and_the_rest_kept() {
        let acl = value(&[
            (0x01, 6, NONE),
            (TAG_USER, 6, 1000),
            (TAG_USER, 4, 7),
            (0x04, 4, NONE),
            (TAG_GROUP, 2, 50),
            (0x10, 6, NONE),
            (0x20, 4, NONE),
        ]);
        assert_eq!(ids(&acl), (vec![1000, 7], vec![50]));
        // 1000 becomes 5 and so comes before 7, as the kernel keeps them.
        let mapped = map_ids(&acl, |u| if u == 1000 { 5 } else { u }, |g| g + 1);
        assert_eq!(
            mapped,
            value(&[
                (0x01, 6, NONE),
                (TAG_USER, 6, 5),
                (TAG_USER, 4, 7),
                (0x04, 4, NONE),
                (TAG_GROUP, 2, 51),
                (0x10, 6, NONE),
                (0x20, 4, NONE),
            ])
        );
        // Unchanged ids give the same bytes back.
        assert_eq!(map_ids(&mapped, |u| u, |g| g), mapped);
    }

    #[test]
    fn other_layouts_are_left_as_they_are() {
        for odd in [
            &b""[..],
            b"\x02\0\0",
            b"\x01\0\0\0",
            b"\x02\0\0\0\x01\0\x06\0\xff\xff\xff",
        ] {
            assert_eq!(ids(odd), (vec![], vec![]));
            assert_eq!(map_ids(odd, |_| 1, |_| 1), odd);
        }
        assert!(is_acl(ACCESS) && is_acl(DEFAULT) && !is_acl(b"user.x"));
    }
}
