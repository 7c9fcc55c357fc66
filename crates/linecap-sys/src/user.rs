//! Dropping root for good once everything privileged is open (`capture
//! --user`, as `tcpdump -Z`): look the account up, then set the groups,
//! the group and the user, in that order (after the user changes, the
//! process may no longer change its groups).

use std::ffi::{CStr, CString};
use std::io;

/// A user account's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Looks `name` up in the password database (files, LDAP: whatever NSS
/// says). `Ok(None)` if there is no such user.
pub fn lookup_user(name: &str) -> io::Result<Option<Account>> {
    let cname =
        CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in user name"))?;
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    loop {
        // SAFETY: an all-zero passwd is a valid value to be overwritten.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `cname` is a C
        // string, `pwd` and `result` are live locals, `buf` is writable for
        // `buf.len()` bytes; the strings `pwd` points to live in `buf`.
        let rc =
            unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        return Ok(Some(Account { uid: pwd.pw_uid, gid: pwd.pw_gid }));
    }
}

/// Becomes `account` for good, in every thread of the process (glibc
/// applies set*id to all threads): no supplementary groups, real,
/// effective and saved ids all changed, so the kernel clears the
/// permitted, effective and ambient capabilities as the user changes
/// from root. Checked afterwards: a process that is still root fails.
pub fn become_user(account: Account) -> io::Result<()> {
    // SAFETY: setgroups with a count of 0 reads no memory.
    crate::cvt(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    // SAFETY: plain integer arguments.
    crate::cvt(unsafe { libc::setresgid(account.gid, account.gid, account.gid) })?;
    // SAFETY: plain integer arguments.
    crate::cvt(unsafe { libc::setresuid(account.uid, account.uid, account.uid) })?;
    // SAFETY: getuid and geteuid cannot fail.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    if uid != account.uid || euid != account.uid {
        return Err(io::Error::other(format!("still uid {uid}/{euid} after changing to {}", account.uid)));
    }
    Ok(())
}

/// The user name of `uid`, for messages (None if it has none).
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: as in `lookup_user`.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `lookup_user`, with a uid instead of a name.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a C string inside `buf`.
    Some(unsafe { CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_and_nonsense_is_not() {
        assert_eq!(lookup_user("root").unwrap(), Some(Account { uid: 0, gid: 0 }));
        assert_eq!(lookup_user("no-such-user-linecap").unwrap(), None);
        assert!(lookup_user("a\0b").is_err());
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}
