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
/// `ACL_USER_OBJ`: the owner's entry.
const TAG_USER_OBJ: u16 = 0x01;
/// `ACL_USER`: an entry for a named user.
const TAG_USER: u16 = 0x02;
/// `ACL_GROUP_OBJ`: the owning group's entry.
const TAG_GROUP_OBJ: u16 = 0x04;
/// `ACL_GROUP`: an entry for a named group.
const TAG_GROUP: u16 = 0x08;
/// `ACL_MASK`: the most any named entry or the group may have.
const TAG_MASK: u16 = 0x10;
/// `ACL_OTHER`: everyone else's entry.
const TAG_OTHER: u16 = 0x20;

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
/// bytes. Two names that map to one id become one entry with the
/// permissions of both (the kernel refuses an ACL that names an id twice).
/// A value of another layout is returned as it is.
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
    list.dedup_by(|later, kept| {
        let named = matches!(kept.0, TAG_USER | TAG_GROUP);
        let same = named && (later.0, later.2) == (kept.0, kept.2);
        if same {
            kept.1 |= later.1;
        }
        same
    });
    encode(&list)
}

/// An access ACL `value` with the permissions the mode bits stand for (the
/// owner's, the mask's or, without a mask, the group's, and others') taken
/// from `mode`, as `chmod` sets them: the mode the receiver gives the file
/// (after `--chmod`) and its ACL then agree, and the next run finds both as
/// it left them. A value of another layout is returned as it is.
pub(crate) fn with_mode(value: &[u8], mode: u32) -> Vec<u8> {
    let Some(mut list) = entries(value) else {
        return value.to_vec();
    };
    let masked = list.iter().any(|e| e.0 == TAG_MASK);
    let bits = |shift: u32| ((mode >> shift) & 7) as u16;
    for (tag, perm, _) in &mut list {
        match *tag {
            TAG_USER_OBJ => *perm = bits(6),
            TAG_MASK => *perm = bits(3),
            TAG_GROUP_OBJ if !masked => *perm = bits(3),
            TAG_OTHER => *perm = bits(0),
            _ => {}
        }
    }
    encode(&list)
}

/// The kernel's layout of `list`.
fn encode(list: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + ENTRY * list.len());
    out.extend_from_slice(&VERSION.to_le_bytes());
    for &(tag, perm, id) in list {
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
        encode(list)
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
    fn two_names_for_one_id_become_one_entry() {
        let acl = value(&[
            (0x01, 6, NONE),
            (TAG_USER, 4, 7),
            (TAG_USER, 2, 8),
            (0x04, 4, NONE),
            (0x10, 6, NONE),
            (0x20, 4, NONE),
        ]);
        let mapped = map_ids(&acl, |_| 9, |g| g);
        let want = value(&[
            (0x01, 6, NONE),
            (TAG_USER, 6, 9),
            (0x04, 4, NONE),
            (0x10, 6, NONE),
            (0x20, 4, NONE),
        ]);
        assert_eq!(mapped, want);
    }

    #[test]
    fn the_mode_sets_the_owner_mask_and_others() {
        let acl = value(&[
            (0x01, 6, NONE),
            (TAG_USER, 6, 7),
            (0x04, 4, NONE),
            (0x10, 6, NONE),
            (0x20, 4, NONE),
        ]);
        let want = value(&[
            (0x01, 7, NONE),
            (TAG_USER, 6, 7),
            (0x04, 4, NONE),
            (0x10, 5, NONE),
            (0x20, 0, NONE),
        ]);
        assert_eq!(with_mode(&acl, 0o750), want);
        // Without a mask, the group's entry is the group bits.
        let plain = value(&[(0x01, 6, NONE), (0x04, 4, NONE), (0x20, 4, NONE)]);
        let want = value(&[(0x01, 6, NONE), (0x04, 0, NONE), (0x20, 0, NONE)]);
        assert_eq!(with_mode(&plain, 0o600), want);
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
            assert_eq!(with_mode(odd, 0o777), odd);
        }
        assert!(is_acl(ACCESS) && is_acl(DEFAULT) && !is_acl(b"user.x"));
    }
}
