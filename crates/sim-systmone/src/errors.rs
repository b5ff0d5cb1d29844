//! SystmOne errors: numeric `errorCode`s in an `<Error>` element (PFS) or `<Error errorCode message>` inside a
//! `ClientIntegrationResponse` (transaction), and the mapping of the world's write refusals to codes.

use crate::xml::El;
use im1_sim::record::WriteError;

/// A dialect error: code, friendly text, technical text, and the HTTP status the PFS surface uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TppError {
    pub code: u32,
    pub friendly: &'static str,
    pub technical: String,
    pub http: u16,
    /// For Error 2201: the failing consultation item (0-based, document order).
    pub item_index: Option<usize>,
}

impl TppError {
    /// A business error (HTTP 200).
    pub fn new(code: u32, friendly: &'static str, technical: impl Into<String>) -> TppError {
        TppError {
            code,
            friendly,
            technical: technical.into(),
            http: 200,
            item_index: None,
        }
    }

    /// Error 1, invalid request.
    pub fn invalid(technical: impl Into<String>) -> TppError {
        TppError::new(1, "The request was not valid", technical)
    }

    /// Error 1 with HTTP 400 (malformed XML, wrong `type` header).
    pub fn malformed(technical: impl Into<String>) -> TppError {
        TppError {
            http: 400,
            ..TppError::invalid(technical)
        }
    }

    /// Error 3, not authenticated (bad or expired `suid`, bad API key).
    pub fn not_authenticated() -> TppError {
        TppError::new(3, "Please log in again", "not authenticated")
    }

    /// Error 6, no access (service switched off, patient not accessible).
    pub fn no_access(technical: impl Into<String>) -> TppError {
        TppError::new(6, "You do not have access to this service", technical)
    }

    /// Error 12, another request is in progress on this session.
    pub fn in_progress() -> TppError {
        TppError::new(
            12,
            "Please wait for your previous request to finish",
            "request already in progress",
        )
    }

    /// Error 99, load shedding (HTTP 503, `Retry-After: 5` on PFS).
    pub fn busy() -> TppError {
        TppError {
            http: 503,
            ..TppError::new(99, "The service is busy, please try again", "load shedding")
        }
    }

    /// Error 1001 (invented), patient not found.
    pub fn patient_not_found() -> TppError {
        TppError::new(1001, "The patient could not be found", "patient not found")
    }

    /// Error 1002 (invented), item not found.
    pub fn item_not_found(what: &str) -> TppError {
        TppError::new(1002, "The item could not be found", format!("{what} not found"))
    }

    /// Error 2200 (invented), clinical data not valid.
    pub fn bad_clinical(technical: impl Into<String>) -> TppError {
        TppError::new(2200, "The clinical data was not valid", technical)
    }

    /// The PFS `<Error .../>` element.
    pub fn pfs_element(&self, uuid: &str) -> El {
        El::new("Error")
            .attr("errorCode", self.code.to_string())
            .attr("userFriendlyMessage", self.friendly)
            .attr("technicalMessage", self.technical.clone())
            .attr("uuid", uuid)
    }

    /// The transaction `<Error .../>` element.
    pub fn transaction_element(&self) -> El {
        El::new("Error")
            .attr("errorCode", self.code.to_string())
            .attr("message", self.technical.clone())
            .opt("itemIndex", self.item_index.map(|i| i.to_string()))
    }
}

impl From<WriteError> for TppError {
    fn from(e: WriteError) -> TppError {
        let text = e.to_string();
        match e {
            WriteError::PatientNotFound => TppError::patient_not_found(),
            WriteError::PracticeNotFound | WriteError::NotRegistered | WriteError::ProxyLinkNotFound => {
                TppError::no_access(text)
            }
            WriteError::ServiceDisabled(_) => TppError::no_access(text),
            WriteError::SlotNotFound => TppError::new(1102, "That appointment could not be found", text),
            WriteError::SlotTaken => TppError::new(1103, "That appointment is no longer available", text),
            WriteError::SlotInPast => TppError::new(5, "That appointment is in the past", text),
            WriteError::AppointmentNotFound | WriteError::AlreadyCancelled => {
                TppError::new(1104, "That appointment could not be found", text)
            }
            WriteError::AppointmentInPast | WriteError::AppointmentSeen => {
                TppError::new(1105, "That appointment is in the past", text)
            }
            WriteError::CourseNotFound(_) | WriteError::CourseNotRequestable(_) | WriteError::NothingRequested => {
                TppError::new(2101, "That medication cannot be requested online", text)
            }
            WriteError::UnknownCode(_) | WriteError::Invalid(_) => TppError::bad_clinical(text),
            WriteError::UnknownPractitioner(_) => TppError::invalid(text),
            WriteError::InvalidEntry { .. } => TppError::new(2201, "A consultation item was not valid", text),
        }
    }
}
