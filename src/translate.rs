//! One interaction through one mapping: the request template becomes a native call, the reply's records
//! become UK Core resources, each with its logical id and provenance. Nothing here names a supplier: the
//! mapping file says what to call and the backend's dialect says how.

use crate::auth::{Principal, Role};
use crate::backend::client::CallRecord;
use crate::backend::{NativeCall, PracticeBackend};
use crate::fhir::error::{warning, IssueType};
use crate::fhir::rest::SearchParam;
use crate::fhir::search;
use crate::fhir::{FhirError, FhirResult};
use crate::ids::{IdCodec, LogicalId};
use crate::mapping::file::{InteractionDef, ParamDef};
use crate::mapping::template::{eval, Scope, Tmpl};
use crate::mapping::{Compartment, MappingFile, Registry, Surface};
use serde_json::{json, Map, Value};

/// What a translation needs besides the mapping.
pub struct Context<'a> {
    pub registry: &'a Registry,
    pub ids: &'a IdCodec,
    pub principal: &'a Principal,
    pub request_id: &'a str,
}

/// Resources produced for one practice, with the warnings to pass on and the native calls made.
#[derive(Default)]
pub struct Produced {
    pub resources: Vec<Value>,
    pub warnings: Vec<Value>,
    pub calls: Vec<CallRecord>,
}

/// The surface a principal's requests go through.
pub fn surface_for(principal: &Principal) -> Surface {
    match principal.role {
        Role::Patient => Surface::Patient,
        _ => Surface::Transaction,
    }
}

/// Reads one resource by its decoded logical id.
pub async fn read(
    ctx: &Context<'_>,
    practice: &PracticeBackend,
    mapping: &MappingFile,
    id: &LogicalId,
    out: &mut Produced,
) -> FhirResult<Value> {
    let def = mapping.read.as_ref().ok_or_else(|| not_supported(mapping, "read"))?;
    let surface = surface_for(ctx.principal);
    let step = step(def, surface, mapping, "read")?;
    let vars = Vars::new(practice, ctx.principal, id, Value::Object(Map::new()));
    let records = call_and_select(ctx, practice, &step.request, &step.select, &vars, out).await?;
    for record in records {
        let resource = build(ctx, practice, mapping, &record, &vars, &id.patient)?;
        if let Some(resource) = resource {
            if resource.get("id").and_then(Value::as_str)
                == Some(&ctx.ids.encode(&mapping.resource, id).unwrap_or_default())
            {
                return Ok(resource);
            }
        }
    }
    Err(FhirError::not_found(
        "IM1-1401",
        format!("{} not found", mapping.resource),
    ))
}

/// Searches one practice; `params` have been checked against the mapping already.
pub async fn search(
    ctx: &Context<'_>,
    practice: &PracticeBackend,
    mapping: &MappingFile,
    params: &[(&ParamDef, &SearchParam)],
    patient: &str,
    out: &mut Produced,
) -> FhirResult<()> {
    let def = mapping
        .search
        .as_ref()
        .ok_or_else(|| not_supported(mapping, "search"))?;
    let surface = surface_for(ctx.principal);
    let step = step(def, surface, mapping, "search")?;
    for required in &step.requires {
        if !params.iter().any(|(d, _)| &d.name == required) {
            return Err(FhirError::bad_request(
                "IM1-1204",
                format!(
                    "searching {} at this practice needs the '{required}' parameter",
                    mapping.resource
                ),
            )
            .at(required.clone()));
        }
    }
    let mut param_vars = Map::new();
    for (def, param) in params {
        let first = param.values.first().cloned().unwrap_or_default();
        let (system, code) = match first.split_once('|') {
            Some((s, c)) => (Value::from(s), Value::from(c)),
            None => (Value::Null, Value::from(first.as_str())),
        };
        param_vars.insert(
            def.name.clone(),
            json!({ "value": first, "system": system, "code": code, "values": param.values }),
        );
    }
    let id = LogicalId {
        practice: practice.ods.clone(),
        patient: patient.to_string(),
        item: String::new(),
    };
    let vars = Vars::new(practice, ctx.principal, &id, Value::Object(param_vars));
    let records = call_and_select(ctx, practice, &step.request, &step.select, &vars, out).await?;
    for record in records {
        if let Some(resource) = build(ctx, practice, mapping, &record, &vars, patient)? {
            if search::matches(&resource, params)? {
                out.resources.push(resource);
            }
        }
    }
    Ok(())
}

fn not_supported(mapping: &MappingFile, what: &str) -> FhirError {
    FhirError::method_not_allowed(
        "IM1-1402",
        format!("{what} of {} is not supported at this practice", mapping.resource),
    )
}

fn step<'m>(
    def: &'m InteractionDef,
    surface: Surface,
    mapping: &MappingFile,
    what: &str,
) -> FhirResult<&'m crate::mapping::file::NativeStep> {
    def.surfaces.get(&surface).ok_or_else(|| {
        FhirError::forbidden(
            "IM1-2401",
            format!(
                "{what} of {} is not available to this kind of user at this practice",
                mapping.resource
            ),
        )
    })
}

/// The variables request, select and record templates see.
struct Vars {
    id: Value,
    params: Value,
    practice: Value,
    patient: Value,
    nhs: Option<String>,
}

impl Vars {
    fn new(practice: &PracticeBackend, principal: &Principal, id: &LogicalId, params: Value) -> Vars {
        Vars {
            id: json!({ "item": id.item, "patient": id.patient }),
            params,
            practice: json!({ "ods": practice.ods, "supplier": practice.supplier.key() }),
            patient: json!({ "native": id.patient }),
            nhs: principal.nhs_number.clone(),
        }
    }
}

async fn call_and_select(
    ctx: &Context<'_>,
    practice: &PracticeBackend,
    request: &Tmpl,
    select: &Tmpl,
    vars: &Vars,
    out: &mut Produced,
) -> FhirResult<Vec<Value>> {
    let partials = &ctx.registry.partials;
    // Scopes are not Send: build them on each side of the native call, never across it.
    let request = {
        let scope = Scope::root("id", &vars.id);
        let scope = scope.bind("params", &vars.params);
        let scope = scope.bind("practice", &vars.practice);
        let scope = scope.bind("patient", &vars.patient);
        eval(request, &scope, partials)
            .map_err(|e| FhirError::internal("IM1-3102", format!("the mapping's request template failed: {}", e.0)))?
            .unwrap_or(Value::Null)
    };
    let call = NativeCall {
        surface: surface_for(ctx.principal),
        request: &request,
        patient_nhs: vars.nhs.as_deref(),
        request_id: ctx.request_id,
    };
    let reply = practice.call(&call, &mut out.calls).await?;
    let scope = Scope::root("id", &vars.id);
    let scope = scope.bind("params", &vars.params);
    let scope = scope.bind("practice", &vars.practice);
    let scope = scope.bind("patient", &vars.patient);
    let scope = scope.bind("reply", &reply.body);
    let selected = eval(select, &scope, partials)
        .map_err(|e| FhirError::internal("IM1-3103", format!("the mapping's select failed: {}", e.0)))?;
    Ok(match selected {
        None => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(single) => vec![single],
    })
}

/// Builds one resource from one native record: template, id, provenance.
fn build(
    ctx: &Context<'_>,
    practice: &PracticeBackend,
    mapping: &MappingFile,
    record: &Value,
    vars: &Vars,
    patient_key: &str,
) -> FhirResult<Option<Value>> {
    let partials = &ctx.registry.partials;
    let failed = |e: crate::mapping::template::EvalError| {
        FhirError::internal("IM1-3104", format!("{}: the template failed: {}", mapping.file, e.0))
    };
    let scope = Scope::root("r", record);
    let scope = scope.bind("practice", &vars.practice);
    let scope = scope.bind("patient", &vars.patient);
    let Some(native_key) = eval(&mapping.id, &scope, partials).map_err(failed)? else {
        return Ok(None);
    };
    let native_key = match native_key {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let Some(mut resource) = eval(&mapping.template, &scope, partials).map_err(failed)? else {
        return Ok(None);
    };
    let id = LogicalId {
        practice: practice.ods.clone(),
        patient: if mapping.compartment == Compartment::Patient {
            patient_key.to_string()
        } else {
            String::new()
        },
        item: native_key.clone(),
    };
    let logical = ctx
        .ids
        .encode(&mapping.resource, &id)
        .map_err(|e| FhirError::internal("IM1-3105", format!("{}: {e}", mapping.file)))?;
    if let Some(object) = resource.as_object_mut() {
        let mut meta = object
            .remove("meta")
            .and_then(|m| m.as_object().cloned())
            .unwrap_or_default();
        meta.insert("profile".into(), json!([mapping.profile]));
        meta.insert(
            "source".into(),
            json!(format!(
                "https://im1-fhir.dev/source/{}/{}/{}/{}?mapping={}",
                practice.supplier.key(),
                practice.ods,
                mapping.resource,
                percent_encoding::utf8_percent_encode(&native_key, crate::backend::PATH_SEGMENT),
                mapping.version
            )),
        );
        // Put id and meta first, as FHIR examples do.
        let mut ordered = Map::new();
        ordered.insert("resourceType".into(), json!(mapping.resource));
        ordered.insert("id".into(), json!(logical));
        ordered.insert("meta".into(), Value::Object(meta));
        for (k, v) in std::mem::take(object) {
            if k != "resourceType" && k != "id" {
                ordered.insert(k, v);
            }
        }
        *object = ordered;
    }
    Ok(Some(resource))
}

/// The warning a Bundle carries for an unknown parameter dropped under `Prefer: handling=lenient`.
pub fn dropped_param_warning(name: &str) -> Value {
    warning(
        IssueType::NotSupported,
        "IM1-1205",
        format!("the search parameter '{name}' is not supported and was ignored"),
    )
}
