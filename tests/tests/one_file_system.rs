//! `-x` (`--one-file-system`) through the real binaries, locally, pushed and
//! pulled: the sender lists a mount point as an empty directory with the
//! mounted directory's attributes and nothing it holds (`-xx`: leaves it
//! out), the receiver deletes nothing inside a mount point the sender did not
//! enter, and `--delete` on the receiver enters none of its own mount points.
//!
//! Each side that needs a mount runs in a mount namespace of its own
//! (`unshare -m`; `unshare -rm` when not root), where a fresh tmpfs is
//! mounted; nothing is mounted where the test runs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use jsync_tests::bins::{assert_ok as ok, bin, Jsrv};
use jsync_tests::Keys;

/// A tmpfs to mount at a path, and the shell commands that fill it (run in it).
struct Mount<'a> {
    at: &'a Path,
    fill: &'a str,
}

/// The sender's mount point: what the mounted filesystem holds, and its mode.
const SOURCE_MOUNT: &str = "echo in > inner && mkdir sub && echo deep > sub/f && chmod 750 .";
/// The receiver's mount point: a file the sender does not have.
const DEST_MOUNT: &str = "echo mine > mfile";

/// `unshare -m sh -c SCRIPT sh`, to be followed by a command: it runs in a
/// mount namespace of its own with `mounts` made. With `report`, `ls -A` of
/// each mount that was filled with [`DEST_MOUNT`] is written there once the
/// command has run (the mounts go with the namespace), and the command's
/// status is kept; without, the shell becomes the command (`exec`).
fn in_namespace(mounts: &[Mount<'_>], report: Option<&Path>) -> Vec<String> {
    let mut script = String::from("set -e\n");
    for m in mounts {
        script += &format!(
            "mount -t tmpfs none '{0}'\ncd '{0}'\n{1}\ncd /\n",
            m.at.display(),
            m.fill
        );
    }
    match report {
        Some(r) => {
            script += "set +e\n\"$@\"\nrc=$?\n";
            for m in mounts.iter().filter(|m| m.fill == DEST_MOUNT) {
                script += &format!("ls -A '{}' >> '{}'\n", m.at.display(), r.display());
            }
            script += "exit $rc\n";
        }
        None => script += "exec \"$@\"\n",
    }
    // As root, a mount namespace; otherwise in a user namespace too, where
    // the kernel allows one.
    let flags = if rustix::process::geteuid().is_root() {
        "-m"
    } else {
        "-rm"
    };
    ["unshare", flags, "sh", "-c", &script, "sh"]
        .map(String::from)
        .to_vec()
}

fn run_wrapped(wrapper: &[String], program: &Path, args: &[&str]) -> Output {
    Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg(program)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run unshare")
}

fn make_source(src: &Path) {
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), "a").unwrap();
    std::fs::create_dir(src.join("m")).unwrap();
    std::fs::create_dir(src.join("n")).unwrap();
    std::fs::write(src.join("n/x"), "x").unwrap();
}

/// The destination before a run: a file in the sender's mount point, a file
/// the source lacks, and the directory where the receiver may have a mount.
fn make_destination(dst: &Path) {
    std::fs::create_dir_all(dst.join("m")).unwrap();
    std::fs::write(dst.join("m/old"), "old").unwrap();
    std::fs::create_dir(dst.join("n")).unwrap();
    std::fs::write(dst.join("extra.txt"), "extra").unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// What `jcp -x --delete src/ dst` leaves, as seen outside the namespaces
/// (where the receiver's mount, and so n/, is gone).
fn check_sent(dst: &Path, what: &str) {
    assert_eq!(std::fs::read(dst.join("d/f")).unwrap(), b"a", "{what}: d/f");
    let m = std::fs::metadata(dst.join("m")).unwrap();
    assert!(m.is_dir(), "{what}: m");
    assert_eq!(
        m.permissions().mode() & 0o7777,
        0o750,
        "{what}: m has the mounted directory's mode"
    );
    assert_eq!(
        names(&dst.join("m")),
        ["old"],
        "{what}: nothing of the mount crossed, nothing in m deleted"
    );
    assert!(
        !dst.join("extra.txt").exists(),
        "{what}: --delete still deletes"
    );
}

fn report(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().replace('\n', " ")
}

#[test]
fn one_file_system_locally() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    let rep = work.path().join("report");
    make_source(&src);
    let src_arg = format!("{}/", src.display());
    // Besides n/, the receiver has a mount inside gone/, a directory the
    // source lacks, and one at top/, which the source lacks itself.
    let mounts = |d: &Path| {
        std::fs::create_dir_all(d.join("gone/mnt")).unwrap();
        std::fs::create_dir_all(d.join("top")).unwrap();
        let _ = std::fs::remove_file(&rep);
        in_namespace(
            &[
                Mount {
                    at: &d.join("n"),
                    fill: DEST_MOUNT,
                },
                Mount {
                    at: &d.join("gone/mnt"),
                    fill: DEST_MOUNT,
                },
                Mount {
                    at: &d.join("top"),
                    fill: DEST_MOUNT,
                },
                Mount {
                    at: &src.join("m"),
                    fill: SOURCE_MOUNT,
                },
            ],
            Some(&rep),
        )
    };

    make_destination(&dst);
    let out = run_wrapped(
        &mounts(&dst),
        &bin("jcp"),
        &["-q", "-x", "--delete", &src_arg, dst.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("gone/mnt: on another filesystem (-x): not deleted"),
        "the one error names the mount point: {stderr}"
    );
    assert!(
        stderr.contains("top: on another filesystem (-x): not deleted"),
        "the error names the mount point the source lacks: {stderr}"
    );
    assert_eq!(
        stderr.matches("jcp: ").count(),
        3,
        "two errors, one summary: {stderr}"
    );
    check_sent(&dst, "local -x --delete");
    assert_eq!(
        report(&rep),
        "mfile x mfile mfile ",
        "--delete -x left the receiver's mounts alone (and wrote into n/)"
    );

    // The same without -x: the fixture shows what -x kept from happening.
    let plain = work.path().join("plain");
    make_destination(&plain);
    let out = run_wrapped(
        &mounts(&plain),
        &bin("jcp"),
        &["-q", "--delete", &src_arg, plain.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "rmdir of a mount point: {stderr}"
    );
    assert_eq!(names(&plain.join("m")), ["inner", "sub"]);
    assert_eq!(
        report(&rep),
        "x ",
        "without -x, --delete empties the mounts"
    );

    // -xx leaves the mount point out.
    let twice = work.path().join("twice");
    let source_only = in_namespace(
        &[Mount {
            at: &src.join("m"),
            fill: SOURCE_MOUNT,
        }],
        None,
    );
    let out = run_wrapped(
        &source_only,
        &bin("jcp"),
        &["-q", "-xx", &src_arg, twice.to_str().unwrap()],
    );
    ok(&out, "local -xx");
    assert_eq!(names(&twice), ["d", "n"], "-xx: no m");
}

#[test]
fn one_file_system_pushed_and_pulled() {
    let keys = Keys::new();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let src = work.path().join("src");
    make_source(&src);
    make_source(&root.join("src"));
    let rep = work.path().join("report");

    // Pull: jsrv, the sender, sees a mount in its source; jcp, the receiver,
    // one in its destination.
    let srv = Jsrv::start_wrapped(
        &in_namespace(
            &[Mount {
                at: &root.join("src/m"),
                fill: SOURCE_MOUNT,
            }],
            None,
        ),
        keys.path(),
        &root,
        &[],
    );
    let pulled = work.path().join("pulled");
    make_destination(&pulled);
    let wrapper = in_namespace(
        &[Mount {
            at: &pulled.join("n"),
            fill: DEST_MOUNT,
        }],
        Some(&rep),
    );
    let port = srv.port.to_string();
    let common = [
        "--config-dir",
        keys.path().to_str().unwrap(),
        "--port",
        &port,
        "-q",
    ];
    let mut args = common.to_vec();
    args.extend(["-x", "--delete", "127.0.0.1:src/", pulled.to_str().unwrap()]);
    ok(
        &run_wrapped(&wrapper, &bin("jcp"), &args),
        "pull -x --delete",
    );
    check_sent(&pulled, "pull -x --delete");
    assert_eq!(report(&rep), "mfile x ", "pull: the receiver's mount point");

    let mut args = common.to_vec();
    let twice = work.path().join("twice");
    args.extend(["-xx", "127.0.0.1:src/", twice.to_str().unwrap()]);
    ok(
        &Command::new(bin("jcp")).args(&args).output().unwrap(),
        "pull -xx",
    );
    assert_eq!(names(&twice), ["d", "n"], "pull -xx: no m");

    // Push: jcp, the sender, sees the mount.
    let pushed = root.join("dst");
    make_destination(&pushed);
    let wrapper = in_namespace(
        &[Mount {
            at: &src.join("m"),
            fill: SOURCE_MOUNT,
        }],
        None,
    );
    let src_arg = format!("{}/", src.display());
    let mut args = common.to_vec();
    args.extend(["-x", "--delete", &src_arg, "127.0.0.1:dst"]);
    ok(
        &run_wrapped(&wrapper, &bin("jcp"), &args),
        "push -x --delete",
    );
    check_sent(&pushed, "push -x --delete");
    assert_eq!(
        std::fs::read(pushed.join("n/x")).unwrap(),
        b"x",
        "push: n/x"
    );
}

/// `-x` holds making way too: a directory in the way of a file that holds
/// a mount point stays whole (the mount's files too), and that file fails
/// naming the mount point, as rsync's "could not make way"; what another
/// directory in the way held goes as ever.
#[test]
fn making_way_enters_no_other_filesystem() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    let rep = work.path().join("report");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("way"), "a file\n").unwrap();
    std::fs::write(src.join("plain"), "a file too\n").unwrap();
    std::fs::create_dir_all(dst.join("way/mnt")).unwrap();
    std::fs::create_dir_all(dst.join("plain/sub")).unwrap();
    std::fs::write(dst.join("plain/sub/f"), "f\n").unwrap();
    let wrapper = in_namespace(
        &[Mount {
            at: &dst.join("way/mnt"),
            fill: DEST_MOUNT,
        }],
        Some(&rep),
    );
    let src_arg = format!("{}/", src.display());
    let out = run_wrapped(
        &wrapper,
        &bin("jcp"),
        &["-x", "--force", &src_arg, dst.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("way: could not make way for it:")
            && stderr.contains("way/mnt is on another filesystem (-x)"),
        "{stderr}"
    );
    assert_eq!(report(&rep), "mfile ", "the mount's files stay");
    assert!(dst.join("way/mnt").is_dir());
    assert_eq!(std::fs::read(dst.join("plain")).unwrap(), b"a file too\n");
}
