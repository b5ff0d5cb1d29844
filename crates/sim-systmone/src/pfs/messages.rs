//! The PFS messages of a logged-on session: patient selection, service accesses, record, appointments,
//! prescriptions and messaging.

use super::{Call, Pfs};
use crate::appointments::{self, Booking};
use crate::errors::TppError;
use crate::prescriptions;
use crate::record_view::{binary_page, parse_sections};
use crate::render::{tid, tsub, Surface, View};
use crate::xml::El;
use im1_sim::record::{Nid, Patient, Service};

impl Pfs {
    /// The patient a message is about: `patientId` (default the selected one), which the session must reach.
    fn patient(&self, call: &Call<'_>) -> Result<Nid, TppError> {
        match call.node.attr_nonempty("patientId") {
            None => Ok(call.session.selected.clone()),
            Some(pid) => call
                .session
                .patients
                .iter()
                .find(|n| tid(n) == pid)
                .cloned()
                .ok_or_else(|| TppError::no_access("patient not accessible in this session")),
        }
    }

    fn service(&self, patient: &Nid, service: Service) -> Result<(), TppError> {
        if self.world.read(|r| r.service_allowed(self.ods(), patient, service)) {
            Ok(())
        } else {
            Err(TppError::no_access(format!("{service:?} switched off")))
        }
    }

    /// Read the record for a patient with a service on.
    fn read<T>(
        &self,
        call: &Call<'_>,
        service: Service,
        f: impl FnOnce(&View<'_>, &Patient) -> Result<T, TppError>,
    ) -> Result<T, TppError> {
        let pid = self.patient(call)?;
        self.service(&pid, service)?;
        self.world.read(|r| {
            let p = r.patient(&pid).ok_or_else(TppError::patient_not_found)?;
            f(
                &View {
                    record: r,
                    surface: Surface::Patient,
                },
                p,
            )
        })
    }

    pub(super) fn dispatch(&self, call: &Call<'_>) -> Result<El, TppError> {
        let n = call.node;
        let ods = self.ods();
        if n.attr_nonempty("unitId").is_some_and(|u| u != ods) {
            return Err(TppError::no_access("unitId is not this unit"));
        }
        // With `patientId`, an attribute common to the messages (confirmed): when given, it must be the logged-on
        // user's (what SystmOne does without one is not public, so it is not required here).
        if n.attr_nonempty("onlineUserId")
            .is_some_and(|u| u != tsub(&call.session.user, "online-user"))
        {
            return Err(TppError::no_access("onlineUserId is not this session's user"));
        }
        match n.name.as_str() {
            "PatientSelected" => {
                let pid = self.patient(call)?;
                self.sessions.select(call.suid, pid.clone());
                Ok(call.reply().attr("patientId", tid(&pid)))
            }
            "ListServiceAccesses" => {
                let pid = self.patient(call)?;
                let accesses = self.world.read(|r| {
                    [
                        ("Records", Service::Records),
                        ("Appointments", Service::Appointments),
                        ("Prescriptions", Service::Prescriptions),
                        ("Messaging", Service::Messaging),
                    ]
                    .map(|(name, s)| {
                        El::new("ServiceAccess")
                            .attr("name", name)
                            .attr("enabled", if r.service_allowed(ods, &pid, s) { "y" } else { "n" })
                    })
                });
                Ok(call.reply().attr("patientId", tid(&pid)).children(accesses))
            }
            "Logoff" => {
                self.sessions.close(call.suid);
                Ok(call.reply())
            }
            "ViewPatientOverview" => self.read(call, Service::Records, |v, p| Ok(v.overview(p, call.reply()))),
            "RequestPatientRecord" => self.read(call, Service::Records, |v, p| {
                let sections = parse_sections(n.attr("sections"))?;
                v.record_page(p, &sections, n.attr("resumeFrom"), call.reply())
            }),
            "TestResultsView" => self.read(call, Service::Records, |v, p| {
                let from = n.attr_nonempty("startDate").and_then(crate::dates::parse_instant);
                let to = n.attr_nonempty("endDate").and_then(crate::dates::parse_instant);
                Ok(v.test_results(p, from, to, call.reply()))
            }),
            "TestResultsViewDetailed" => {
                let id = n
                    .attr("itemId")
                    .and_then(|i| self.world.resolve(im1_sim::record::Supplier::SystmOne, i))
                    .ok_or_else(|| TppError::item_not_found("test result"))?;
                self.read(call, Service::Records, |v, p| v.test_result(p, &id, call.reply()))
            }
            "RequestBinaryData" => self.read(call, Service::Records, |v, p| {
                let id = n.attr("binaryDataId").unwrap_or_default();
                let page = n.attr("page").unwrap_or("1").parse().unwrap_or(0);
                let d = v
                    .document_by_binary_id(p, id)
                    .ok_or_else(|| TppError::item_not_found("binary data"))?;
                binary_page(d, page, call.reply())
            }),
            "ListSlots" => {
                let pid = self.patient(call)?;
                self.service(&pid, Service::Appointments)?;
                self.world.read(|r| {
                    let view = View {
                        record: r,
                        surface: Surface::Patient,
                    };
                    appointments::list_slots(
                        &self.world,
                        &view,
                        ods,
                        n.attr("startDate"),
                        n.attr("numberOfDays"),
                        call.reply(),
                    )
                })
            }
            "BookAppointment" => {
                let pid = self.patient(call)?;
                self.service(&pid, Service::Appointments)?;
                let b = Booking::from_node(n);
                let a = appointments::book(&self.world, ods, &pid, &b)?;
                call.cx.record_write();
                Ok(self.world.read(|r| {
                    appointments::booked(
                        call.reply(),
                        &a,
                        &View {
                            record: r,
                            surface: Surface::Patient,
                        },
                    )
                }))
            }
            "CancelAppointment" => {
                let pid = self.patient(call)?;
                self.service(&pid, Service::Appointments)?;
                appointments::cancel(&self.world, ods, &pid, n.attr("apptId"), n.attr_nonempty("reason"))?;
                call.cx.record_write();
                Ok(call.reply())
            }
            "ViewAppointments" => self.read(call, Service::Appointments, |v, p| {
                Ok(appointments::appointments(v, ods, &p.id, call.reply()))
            }),
            "ListRepeatMedication" => self.read(call, Service::Prescriptions, |v, p| {
                Ok(prescriptions::repeats(
                    v,
                    p,
                    call.reply()
                        .attr("patientId", tid(&p.id))
                        .attr("onlineUserId", tsub(&call.session.user, "online-user")),
                ))
            }),
            "RequestMedication" => {
                let pid = self.patient(call)?;
                self.service(&pid, Service::Prescriptions)?;
                let q = prescriptions::request(&self.world, ods, &pid, n)?;
                call.cx.record_write();
                Ok(call.reply().attr("requestId", tid(&q.id)).attr("status", "Requested"))
            }
            "ListMedicationRequests" => self.read(call, Service::Prescriptions, |v, p| {
                Ok(prescriptions::requests(v, ods, p, call.reply()))
            }),
            "MessageRecipients" => self.read(call, Service::Messaging, |v, _| {
                Ok(prescriptions::recipients(v, ods, call.reply()))
            }),
            "MessagesView" => self.read(call, Service::Messaging, |v, p| {
                Ok(prescriptions::messages(v, ods, &p.id, call.reply()))
            }),
            "MessageCreate" => {
                let pid = self.patient(call)?;
                self.service(&pid, Service::Messaging)?;
                let m = prescriptions::send(&self.world, ods, &pid, n)?;
                call.cx.record_write();
                Ok(call.reply().attr("messageId", tid(&m.id)))
            }
            "MessagesMarkAsRead" => {
                let pid = self.patient(call)?;
                self.service(&pid, Service::Messaging)?;
                prescriptions::mark_read(&self.world, ods, &pid, n)?;
                call.cx.record_write();
                Ok(call.reply())
            }
            other => Err(TppError::invalid(format!("unknown message {other}"))),
        }
    }
}
