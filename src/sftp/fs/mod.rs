//! The SFTP file-system handler of one session: every request resolved in
//! the account's jail, uploads tracked per handle, completions journaled
//! before the client's CLOSE or RENAME is answered.
//!
//! This file is the protocol adapter only: each request is decoded, handed
//! to one operation of the session ([`write`]: open, write, close, fsync;
//! [`read`]: read, stat, listings; [`paths`]: setstat, rename, remove,
//! directories), and its outcome encoded as the SFTP reply. The session's
//! state and checks are in [`session`], its handle table in [`handles`],
//! the copy that keeps customers' names apart from archives in [`links`],
//! the statuses a client may see in [`reply`].

mod handles;
mod links;
mod paths;
mod read;
mod reply;
mod session;
mod write;

pub(crate) use session::SftpSession;

use reply::{decode, extended_reply, ok, parse, status, Reply, MAX_IO};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use std::collections::HashMap;

impl russh_sftp::server::Handler for SftpSession {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        status(StatusCode::OpUnsupported, "Operation unsupported")
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Reply<Version> {
        let mut v = Version::new();
        for (name, ver) in [
            ("posix-rename@openssh.com", "1"),
            ("statvfs@openssh.com", "2"),
            ("fsync@openssh.com", "1"),
            ("limits@openssh.com", "1"),
        ] {
            v.extensions.insert(name.into(), ver.into());
        }
        Ok(v)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Reply<Handle> {
        let handle = self.do_open(filename, pflags, attrs).await?;
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Reply<Status> {
        self.do_close(&handle).await.map(|_| ok(id))
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Reply<Data> {
        let data = self.do_read(&handle, offset, len).await?;
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Reply<Status> {
        self.do_write(&handle, offset, data).await.map(|_| ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Reply<Attrs> {
        self.stat(id, path).await
    }

    async fn stat(&mut self, id: u32, path: String) -> Reply<Attrs> {
        let attrs = self.do_stat(&path)?;
        Ok(Attrs { id, attrs })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Reply<Attrs> {
        let attrs = self.do_fstat(&handle)?;
        Ok(Attrs { id, attrs })
    }

    async fn setstat(&mut self, id: u32, path: String, attrs: FileAttributes) -> Reply<Status> {
        let p = parse(&path)?;
        self.do_setstat(p, attrs).await.map(|_| ok(id))
    }

    async fn fsetstat(&mut self, id: u32, handle: String, attrs: FileAttributes) -> Reply<Status> {
        self.do_fsetstat(&handle, attrs).await.map(|_| ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Reply<Handle> {
        let handle = self.do_opendir(&path).await?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Reply<Name> {
        let files = self.do_readdir(&handle).await?;
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Reply<Status> {
        let p = parse(&filename)?;
        self.do_remove(p).await.map(|_| ok(id))
    }

    async fn mkdir(&mut self, id: u32, path: String, attrs: FileAttributes) -> Reply<Status> {
        self.do_mkdir(&path, &attrs).map(|_| ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Reply<Status> {
        self.do_rmdir(&path).map(|_| ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Reply<Name> {
        let p = parse(&path)?;
        Ok(Name {
            id,
            files: vec![File::dummy(p.as_str())],
        })
    }

    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Reply<Status> {
        self.do_rename(&oldpath, &newpath, false)
            .await
            .map(|_| ok(id))
    }

    async fn readlink(&mut self, _id: u32, _path: String) -> Reply<Name> {
        Err(status(
            StatusCode::PermissionDenied,
            "Symbolic links are not supported",
        ))
    }

    async fn symlink(&mut self, _id: u32, _linkpath: String, _targetpath: String) -> Reply<Status> {
        Err(status(
            StatusCode::PermissionDenied,
            "Symbolic links are not allowed",
        ))
    }

    async fn extended(&mut self, id: u32, request: String, data: Vec<u8>) -> Reply<Packet> {
        use russh_sftp::extensions::{
            FsyncExtension, HardlinkExtension, LimitsExtension, StatvfsExtension,
        };
        match request.as_str() {
            "posix-rename@openssh.com" => {
                let r: HardlinkExtension = decode(data)?;
                self.do_rename(&r.oldpath, &r.newpath, true).await?;
                Ok(Packet::Status(ok(id)))
            }
            "fsync@openssh.com" => {
                let r: FsyncExtension = decode(data)?;
                self.do_fsync(&r.handle).await?;
                Ok(Packet::Status(ok(id)))
            }
            "statvfs@openssh.com" => {
                let _r: StatvfsExtension = decode(data)?;
                extended_reply(id, &self.do_statvfs()?)
            }
            "limits@openssh.com" => extended_reply(
                id,
                &LimitsExtension {
                    max_packet_len: 262_144,
                    max_read_len: MAX_IO as u64,
                    max_write_len: MAX_IO as u64,
                    max_open_handles: self.shared.handles.limits().session as u64,
                },
            ),
            _ => Err(self.unimplemented()),
        }
    }
}
