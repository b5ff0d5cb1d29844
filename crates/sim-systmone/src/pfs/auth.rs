//! `LinkAccount` and `Authenticate`: the only PFS messages without a `suid`.

use super::{error_reply, xml_reply, Pfs};
use crate::errors::TppError;
use crate::render::{tid, tsub, Surface, View};
use crate::session::{account, auth_passphrase};
use crate::xml::{El, Node};
use http::HeaderValue;
use im1_sim::common::SimResponse;
use im1_sim::record::{Nid, Patient, Record};

impl Pfs {
    /// Both messages identify the application with an `<Application .. providerId ..>` child (confirmed);
    /// `Authenticate` also names the provider id as an attribute (confirmed). Where either is missing or not
    /// the paired id: error 2010 (the code is ours).
    fn provider_ok(&self, node: &Node, as_attribute: bool) -> bool {
        let paired = Some(self.config.provider_id.as_str());
        let application = node.child("Application").and_then(|a| a.attr("providerId"));
        application == paired && (!as_attribute || node.attr("providerId") == paired)
    }

    pub(super) fn link(&self, node: &Node, uuid: &str) -> Result<El, TppError> {
        if !self.provider_ok(node, false) {
            return Err(TppError::new(
                2010,
                "There was a problem linking your account",
                "invalid provider id",
            ));
        }
        let invalid =
            |code: u32, t: &str| TppError::new(code, "The details you entered are not correct", t.to_string());
        if node.attr("organisationCode") != Some(self.ods()) {
            return Err(invalid(2006, "unknown organisationCode"));
        }
        let account_id = node.attr("accountId").unwrap_or_default();
        let given = node.attr("passphrase").unwrap_or_default();
        self.world.read(|r| {
            let (pid, passphrase) =
                account(r, self.ods(), account_id).ok_or_else(|| invalid(2006, "invalid linkage credentials"))?;
            if passphrase != given {
                return Err(invalid(2006, "invalid linkage credentials"));
            }
            let p = r
                .patient(pid)
                .ok_or_else(|| invalid(2006, "invalid linkage credentials"))?;
            let surname_ok = node
                .attr("lastName")
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(&p.name.family));
            let dob_ok = node
                .attr("dateOfBirth")
                .and_then(crate::dates::parse_instant)
                .is_some_and(|d| d.date() == p.birth_date);
            if !surname_ok || !dob_ok {
                return Err(invalid(2008, "lastName or dateOfBirth do not match"));
            }
            Ok(El::new("LinkAccountReply")
                .attr("uuid", uuid)
                .attr("accountId", account_id)
                .attr("passphrase", auth_passphrase(account_id, passphrase))
                .attr("passphraseToLink", passphrase)
                .child(El::new("ProviderId").text(self.config.provider_id.clone())))
        })
    }

    pub(super) fn authenticate(&self, node: &Node, uuid: &str) -> SimResponse {
        let fail = || TppError::new(9, "There was a problem logging on", "invalid account or passphrase");
        if !self.provider_ok(node, true) {
            let e = TppError::new(2010, "There was a problem logging on", "invalid provider id");
            return error_reply(&e, uuid);
        }
        let account_id = node.attr("accountId").unwrap_or_default();
        if self.limiter.check(&format!("auth:{account_id}")).is_err() {
            return error_reply(&TppError::busy(), uuid);
        }
        let found = self.world.read(|r| {
            let (pid, passphrase) = account(r, self.ods(), account_id)?;
            if node.attr("passphrase") != Some(auth_passphrase(account_id, passphrase).as_str()) {
                return None;
            }
            let user = r.patient(pid)?;
            let mut patients = vec![user.id.clone()];
            patients.extend(
                r.proxied_by(&user.id)
                    .into_iter()
                    .filter(|l| {
                        r.patient(&l.patient)
                            .is_some_and(|p| p.registration(self.ods()).is_some())
                    })
                    .map(|l| l.patient.clone()),
            );
            let reply = self.authenticate_reply(r, user, &patients, uuid);
            Some((user.id.clone(), patients, reply))
        });
        let Some((user, patients, reply)) = found else {
            return error_reply(&fail(), uuid);
        };
        let suid = self.sessions.open(account_id, user, patients);
        let mut r = xml_reply(200, reply.to_xml());
        if let Ok(v) = HeaderValue::from_str(&suid) {
            r.headers_mut().insert("suid", v);
        }
        r
    }

    fn authenticate_reply(&self, r: &Record, user: &Patient, patients: &[Nid], uuid: &str) -> El {
        let view = View {
            record: r,
            surface: Surface::Patient,
        };
        let access = patients.iter().filter_map(|id| r.patient(id)).map(|p| {
            let mut el = El::new("PatientAccess").attr("patientId", tid(&p.id));
            if p.id != user.id {
                if let Some(link) = r.proxied_by(&user.id).into_iter().find(|l| l.patient == p.id) {
                    el.set("relationship", format!("{:?}", link.relationship));
                }
            }
            el.child(view.site(self.ods()))
        });
        El::new("AuthenticateReply")
            .attr("uuid", uuid)
            .attr("onlineUserId", tsub(&user.id, "online-user"))
            .child(El::new("User").child(view.person(user, self.ods())))
            .child(El::new("Registration").children(access))
            .children(
                patients
                    .iter()
                    .filter_map(|id| r.patient(id))
                    .map(|p| view.person(p, self.ods())),
            )
    }
}
