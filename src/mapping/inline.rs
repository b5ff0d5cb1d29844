//! Partials inlined where they are called: the body with each parameter replaced by its argument, run in
//! the caller's scope.
//!
//! A partial otherwise costs, on every record, a list of its arguments and a scope per parameter, with
//! every name its body reads looked up through them: as much as the few fields it makes. The inlined body
//! gives the same value, because each parameter is replaced only as exactly as its argument allows:
//! - a plain path argument: the path followed by the parameter's steps, read clean as the parameter was;
//! - a literal: where the body takes text, not where a condition tests a path;
//! - an argument read once, as a whole leaf (an expression, another partial, text): the argument itself, so
//!   it is still evaluated once;
//! - any other argument is bound once, as the partial bound it, under a name no mapping can write (`@name#7`).
//!
//! Anything else keeps the partial as written: an expression only the engine runs (its names are the
//! partial's), a literal or a path with list indexes where a condition tests the parameter, a loop in the body
//! where an argument is copied in (its variable could capture the argument's names). A call inlined that
//! meets, at run time, a value only the engine takes gives up, and the partial then runs as written (see
//! `template::eval`).

use super::call::PathSub;
use super::expr::{Path, Step};
use super::template::{Item, Partial, Tmpl};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Numbers the names arguments are bound to.
static NEXT_NAME: AtomicUsize = AtomicUsize::new(0);

/// A partial's body ready to run in its caller's scope, once the arguments bound by name are.
pub struct Inlined {
    /// Arguments evaluated once and bound, with the name the body reads them by.
    pub lets: Vec<(String, Tmpl)>,
    pub body: Tmpl,
    /// Set once a call in it has given up (a value only the engine takes, such as a coding in
    /// `coding or {...}`): the partial then runs as written, rather than twice, from then on.
    pub gives_up: AtomicBool,
}

/// How a parameter is replaced.
enum Binding<'a> {
    Path(&'a Path),
    Literal(&'a crate::tree::Tree),
    Copy(&'a Tmpl),
    Let(String),
}

/// The partial's body with its parameters replaced by `args`, when that is exact.
pub fn inline(partial: &Partial, args: &[Tmpl]) -> Option<Inlined> {
    let params = &partial.params;
    // A parameter named twice is bound twice, the last binding hiding the first: left as written.
    let named_twice = params.iter().enumerate().any(|(i, p)| params[..i].contains(p));
    if args.len() != params.len() || named_twice {
        return None;
    }
    let mut uses = Uses {
        all: vec![0; args.len()],
        whole_leaves: vec![0; args.len()],
        loops: false,
        conditions: false,
    };
    uses.count(&partial.body, params);
    let mut lets = Vec::new();
    let mut bindings = Vec::with_capacity(args.len());
    for (i, (param, arg)) in partial.params.iter().zip(args).enumerate() {
        // Copied, an argument is evaluated where it is read; written, before the body runs (so its errors
        // and reference marks are the same only where the body reads it unconditionally).
        let read_once_whole = uses.all[i] == 1 && uses.whole_leaves[i] == 1 && !uses.loops && !uses.conditions;
        bindings.push(match arg {
            Tmpl::Path(path) if !path.steps.iter().any(|s| matches!(s, Step::Index(_))) => Binding::Path(path),
            Tmpl::Lit(value) => Binding::Literal(value),
            Tmpl::Expr { .. } | Tmpl::Partial { .. } | Tmpl::Interp(_) if read_once_whole => Binding::Copy(arg),
            _ => {
                // Unique: an inlined partial inside another binds its own arguments inside the other's.
                let name = format!("@{param}#{}", NEXT_NAME.fetch_add(1, Ordering::Relaxed));
                lets.push((name.clone(), copy(arg)?));
                Binding::Let(name)
            }
        });
    }
    let inliner = Inliner {
        params,
        bindings,
        loop_vars: RefCell::new(Vec::new()),
    };
    Some(Inlined {
        lets,
        body: inliner.tmpl(&partial.body)?,
        gives_up: AtomicBool::new(false),
    })
}

struct Inliner<'a> {
    params: &'a [String],
    bindings: Vec<Binding<'a>>,
    /// The loop variables the body binds where the inliner is.
    loop_vars: RefCell<Vec<String>>,
}

impl Inliner<'_> {
    fn binding(&self, root: &str) -> Option<&Binding<'_>> {
        let i = self.params.iter().position(|p| p == root)?;
        self.bindings.get(i)
    }

    /// Whether a name that is no parameter is the body's own (a loop variable): any other would be read
    /// from the caller's scope, where the partial as written sees nothing.
    fn own(&self, root: &str) -> bool {
        self.loop_vars.borrow().iter().any(|v| v == root)
    }

    fn tmpl(&self, tmpl: &Tmpl) -> Option<Tmpl> {
        Some(match tmpl {
            Tmpl::Lit(value) => Tmpl::Lit(value.clone()),
            Tmpl::Path(path) => match self.binding(&path.root) {
                // A whole leaf takes any literal, not only the text a call takes, and a copied argument.
                Some(Binding::Literal(value)) if path.steps.is_empty() => Tmpl::Lit((*value).clone()),
                Some(Binding::Copy(arg)) if path.steps.is_empty() => copy(arg)?,
                _ => match self.path_sub(path)? {
                    PathSub::Same => Tmpl::Path(path.clone()),
                    PathSub::Path(path) | PathSub::Bound(path) => Tmpl::Path(path),
                    PathSub::Text(text) => Tmpl::Lit(crate::tree::Tree::shared(&text)),
                },
            },
            Tmpl::Expr { source, call, .. } => {
                // Only a call runs without the engine, whose names would now be the caller's.
                let call = call.as_ref()?.substitute(&|path| self.path_sub(path))?;
                Tmpl::Expr {
                    source: source.clone(),
                    compiled: None,
                    reads: Default::default(),
                    call: Some(Box::new(call)),
                    chain: None,
                }
            }
            Tmpl::Interp(parts) => Tmpl::Interp(parts.iter().map(|p| self.tmpl(p)).collect::<Option<_>>()?),
            Tmpl::Partial {
                name, args, at, target, ..
            } => Tmpl::Partial {
                name: name.clone(),
                args: args.iter().map(|a| self.tmpl(a)).collect::<Option<_>>()?,
                at: at.clone(),
                target: target.clone(),
                inlined: OnceLock::new(),
            },
            Tmpl::Object { cond, fields } => Tmpl::Object {
                cond: match cond {
                    Some(cond) => Some(Box::new(self.tmpl(cond)?)),
                    None => None,
                },
                fields: fields
                    .iter()
                    .map(|(key, field)| Some((key.clone(), self.tmpl(field)?)))
                    .collect::<Option<_>>()?,
            },
            Tmpl::Array(items) => Tmpl::Array(
                items
                    .iter()
                    .map(|item| match item {
                        Item::One(t) => Some(Item::One(self.tmpl(t)?)),
                        Item::Each { source, var, body } => {
                            // A loop variable named as an argument's root would capture it.
                            if self.captures(var) {
                                return None;
                            }
                            let source = self.tmpl(source)?;
                            self.loop_vars.borrow_mut().push(var.clone());
                            let body = self.tmpl(body);
                            self.loop_vars.borrow_mut().pop();
                            Some(Item::Each {
                                source,
                                var: var.clone(),
                                body: body?,
                            })
                        }
                    })
                    .collect::<Option<_>>()?,
            ),
        })
    }

    /// Whether a loop variable of the body could stand for a name an argument reads (copied arguments are
    /// never placed where the body loops: see `inline`).
    fn captures(&self, var: &str) -> bool {
        self.params.iter().any(|p| p == var)
            || self
                .bindings
                .iter()
                .any(|b| matches!(b, Binding::Path(arg) if arg.root == var))
    }

    /// What a path in a call of the body becomes.
    fn path_sub(&self, path: &Path) -> Option<PathSub> {
        match self.binding(&path.root) {
            None if self.own(&path.root) => Some(PathSub::Same),
            None => None,
            Some(Binding::Path(arg)) => Some(PathSub::Path(joined(arg, path))),
            Some(Binding::Let(name)) => Some(PathSub::Bound(renamed(name, path))),
            // Text as a call reads it through a path: blank text is nothing there, and some functions trim
            // what they read; only text neither touches is put in as it is.
            Some(Binding::Literal(crate::tree::Tree::String(text)))
                if path.steps.is_empty() && !text.is_empty() && text.trim() == text =>
            {
                Some(PathSub::Text(text.to_string()))
            }
            Some(_) => None,
        }
    }
}

/// The argument's path followed by the parameter path's steps, read clean as the parameter was.
fn joined(arg: &Path, param: &Path) -> Path {
    let mut steps = arg.steps.clone();
    steps.extend(param.steps.iter().cloned());
    Path {
        root: arg.root.clone(),
        steps,
        clean: true,
    }
}

/// The parameter's path from the name its argument is bound to.
fn renamed(name: &str, param: &Path) -> Path {
    Path {
        root: name.to_string(),
        steps: param.steps.clone(),
        clean: param.clean,
    }
}

/// A copy of an argument, evaluated in the caller's scope as it was.
fn copy(tmpl: &Tmpl) -> Option<Tmpl> {
    match tmpl {
        // The engine's form stays: an argument's names are the caller's.
        Tmpl::Expr {
            source,
            compiled,
            reads,
            call,
            ..
        } => Some(Tmpl::Expr {
            source: source.clone(),
            compiled: compiled.clone(),
            reads: reads.clone(),
            call: call.clone(),
            chain: None,
        }),
        Tmpl::Interp(parts) => Some(Tmpl::Interp(parts.iter().map(copy).collect::<Option<_>>()?)),
        Tmpl::Partial {
            name, args, at, target, ..
        } => Some(Tmpl::Partial {
            name: name.clone(),
            args: args.iter().map(copy).collect::<Option<_>>()?,
            at: at.clone(),
            target: target.clone(),
            inlined: OnceLock::new(),
        }),
        Tmpl::Lit(value) => Some(Tmpl::Lit(value.clone())),
        Tmpl::Path(path) => Some(Tmpl::Path(path.clone())),
        // Literal objects and lists as arguments: rare, and left to the partial as written.
        Tmpl::Object { .. } | Tmpl::Array(_) => None,
    }
}

/// How the body reads each parameter.
struct Uses {
    all: Vec<usize>,
    /// As a whole leaf (`"{{ coding }}"`), not in a call nor through steps.
    whole_leaves: Vec<usize>,
    /// Whether the body loops (`$each`).
    loops: bool,
    /// Whether any of the body is conditional (`$if`).
    conditions: bool,
}

impl Uses {
    fn count(&mut self, tmpl: &Tmpl, params: &[String]) {
        let position = |root: &str| params.iter().position(|p| p == root);
        match tmpl {
            Tmpl::Path(path) => {
                if let Some(i) = position(&path.root) {
                    self.all[i] += 1;
                    if path.steps.is_empty() {
                        self.whole_leaves[i] += 1;
                    }
                }
            }
            // The names an expression reads (a superset: function names too, never a parameter's).
            Tmpl::Expr { reads, .. } => {
                for (name, _) in &reads.0 {
                    if let Some(i) = position(name) {
                        self.all[i] += 1;
                    }
                }
            }
            Tmpl::Object { cond: Some(_), .. } => self.conditions = true,
            Tmpl::Array(items) if items.iter().any(|item| matches!(item, Item::Each { .. })) => self.loops = true,
            _ => {}
        }
        tmpl.each_child(&mut |child| self.count(child, params));
    }
}

#[cfg(test)]
mod tests {
    use super::super::template::tests::compiled_with;
    use super::super::template::{self, Scope};
    use super::*;
    use crate::tree::Tree;
    use std::collections::HashMap;
    use std::sync::Arc;

    /// Partials (name, parameters, body) and a template calling them with `r` in scope.
    struct Case {
        partials: HashMap<String, Arc<Partial>>,
        template: Tmpl,
    }

    impl Case {
        fn new(partials: &[(&str, &[&str], &str)], template: &str) -> Case {
            let partials: HashMap<String, Arc<Partial>> = partials
                .iter()
                .map(|(name, params, body)| {
                    let (body, problems) = compiled_with(body, params);
                    assert!(problems.is_empty(), "{problems:?}");
                    let params = params.iter().map(|p| p.to_string()).collect();
                    (
                        name.to_string(),
                        Arc::new(Partial {
                            file: format!("_{name}.yaml"),
                            params,
                            body,
                        }),
                    )
                })
                .collect();
            let (template, problems) = compiled_with(template, &["r"]);
            assert!(problems.is_empty(), "{problems:?}");
            for partial in partials.values() {
                let mut missing = Vec::new();
                template::link(&partial.body, &partials, &mut missing);
                assert!(missing.is_empty(), "{missing:?}");
            }
            Case::linked(partials, template)
        }

        /// A template linked to partials already compiled (the mappings' own).
        fn linked(partials: HashMap<String, Arc<Partial>>, template: Tmpl) -> Case {
            let mut missing = Vec::new();
            template::link(&template, &partials, &mut missing);
            assert!(missing.is_empty(), "{missing:?}");
            Case { partials, template }
        }

        /// The template's value, run inlined where it can be, and run as written: they must agree.
        fn run(&self, record: &Tree) -> Option<Tree> {
            let inlined = template::eval(&self.template, &Scope::root("r", record)).unwrap();
            let written = Case::new_written(self);
            let as_written = template::eval(&written, &Scope::root("r", record)).unwrap();
            assert_eq!(inlined, as_written, "inlined and as written differ");
            inlined
        }

        /// The same template with every partial call kept as written.
        fn new_written(&self) -> Tmpl {
            let copy = copy(&self.template).unwrap_or_else(|| match &self.template {
                Tmpl::Object { fields, .. } => Tmpl::Object {
                    cond: None,
                    fields: fields.iter().map(|(k, f)| (k.clone(), copy(f).unwrap())).collect(),
                },
                _ => panic!("a template of partial calls"),
            });
            keep_written(&copy);
            let mut missing = Vec::new();
            template::link(&copy, &self.partials, &mut missing);
            copy
        }

        /// Whether the first partial call of the template was inlined (once it has run).
        fn inlined(&self) -> bool {
            let Tmpl::Object { fields, .. } = &self.template else {
                return false;
            };
            fields
                .iter()
                .any(|(_, f)| matches!(f, Tmpl::Partial { inlined, .. } if matches!(inlined.get(), Some(Some(_)))))
        }
    }

    /// Marks every partial call as not to be inlined.
    fn keep_written(tmpl: &Tmpl) {
        if let Tmpl::Partial { args, inlined, .. } = tmpl {
            let _ = inlined.set(None);
            args.iter().for_each(keep_written);
        }
    }

    const QUANTITY: (&str, &[&str], &str) = (
        "Quantity",
        &["value", "unit"],
        "$if: \"{{ value is number }}\"\nvalue: \"{{ value }}\"\nunit: \"{{ unit }}\"\ncode: \"{{ unit }}\"\n",
    );

    #[test]
    fn paths_and_literals_are_put_in_place() {
        let case = Case::new(
            &[
                QUANTITY,
                ("Ref", &["type", "key"], "reference: \"{{ type }}/{{ key.Id }}\"\n"),
            ],
            "q: \"{{ partial('Quantity', r.Range.Low, r.Unit) }}\"\nref: \"{{ partial('Ref', 'Patient', r.Who) }}\"\n",
        );
        let out = case.run(&crate::tree!({"Range": {"Low": 1.5}, "Unit": "kg", "Who": {"Id": "p1"}}));
        assert_eq!(
            out,
            Some(crate::tree!({"q": {"value": 1.5, "unit": "kg", "code": "kg"}, "ref": {"reference": "Patient/p1"}}))
        );
        assert!(case.inlined());
        // Read clean, as the parameter was: blank text is nothing.
        let out = case.run(&crate::tree!({"Range": {"Low": "  "}, "Unit": " ", "Who": {"Id": ""}}));
        assert_eq!(out, Some(crate::tree!({"ref": {"reference": "Patient/"}})));
        // Blank text is nothing to a call too, whatever binds the argument's root (`r` here is not read
        // clean; a partial's parameter always is).
        let case = Case::new(
            &[("Blank", &["x"], "v: \"{{ 'blank' if x == '' else 'nothing' }}\"\n")],
            "b: \"{{ partial('Blank', r.X) }}\"\n",
        );
        assert_eq!(
            case.run(&crate::tree!({"X": ""})),
            Some(crate::tree!({"b": {"v": "nothing"}}))
        );
        assert!(case.inlined());
    }

    #[test]
    fn an_argument_read_twice_is_evaluated_once_and_bound() {
        let case = Case::new(
            &[QUANTITY],
            "q: \"{{ partial('Quantity', r.Low | float if r.Low, r.Unit) }}\"\n",
        );
        assert_eq!(
            case.run(&crate::tree!({"Low": "2.5", "Unit": "mg"})),
            Some(crate::tree!({"q": {"value": 2.5, "unit": "mg", "code": "mg"}}))
        );
        assert!(case.inlined());
        assert_eq!(case.run(&crate::tree!({"Unit": "mg"})), None);
    }

    #[test]
    fn a_test_of_whether_a_parameter_is_defined_keeps_the_partial() {
        let case = Case::new(
            &[("Said", &["x"], "said: \"{{ 'yes' if x is defined else 'no' }}\"\n")],
            "s: \"{{ partial('Said', r.Missing) }}\"\n",
        );
        assert_eq!(
            case.run(&crate::tree!({"Other": 1})),
            Some(crate::tree!({"s": {"said": "no"}}))
        );
        assert_eq!(
            case.run(&crate::tree!({"Missing": "m"})),
            Some(crate::tree!({"s": {"said": "yes"}}))
        );
        assert!(!case.inlined());
    }

    #[test]
    fn a_loop_variable_never_captures_an_argument() {
        let case = Case::new(
            &[(
                "Labelled",
                &["items", "label"],
                "list:\n  - $each: \"{{ items }}\"\n    $as: r\n    name: \"{{ label }}\"\n    value: \"{{ r.V }}\"\n",
            )],
            "l: \"{{ partial('Labelled', r.List, r.Name) }}\"\n",
        );
        let out = case.run(&crate::tree!({"Name": "outer", "List": [{"V": 1, "Name": "inner"}]}));
        assert_eq!(
            out,
            Some(crate::tree!({"l": {"list": [{"name": "outer", "value": 1}]}}))
        );
        assert!(!case.inlined());
    }

    #[test]
    fn a_call_that_needs_the_engine_at_run_time_runs_the_partial_as_written() {
        let case = Case::new(
            &[("Either", &["x"], "v: \"{{ x or 'none' }}\"\n")],
            "e: \"{{ partial('Either', r.X) }}\"\n",
        );
        assert!(case.run(&crate::tree!({"X": "text"})).is_some());
        assert!(case.inlined());
        // A list is the engine's to take: the inlined call gives up, and the partial runs as written.
        assert_eq!(
            case.run(&crate::tree!({"X": [1, 2]})),
            Some(crate::tree!({"e": {"v": [1, 2]}}))
        );
        assert_eq!(case.run(&crate::tree!({})), Some(crate::tree!({"e": {"v": "none"}})));
    }

    #[test]
    fn a_name_the_partial_does_not_bind_is_not_read_from_the_caller() {
        // `r` is no parameter of `Leak`: as written, it is undefined there.
        let case = Case::new(
            &[("Leak", &[], "v: \"{{ date(r.D, 'day') }}\"\n")],
            "l: \"{{ partial('Leak') }}\"\n",
        );
        assert_eq!(case.run(&crate::tree!({"D": "2020-01-02"})), None);
        assert!(!case.inlined());
    }

    #[test]
    fn literal_arguments_are_read_as_the_partial_reads_them() {
        let cases: [(&[&str], &str, &str, Tree); 2] = [
            // Blank text is nothing to a call.
            (
                &["x"],
                "v: \"{{ x or 'none' }}\"\n",
                "partial('P', ' ')",
                crate::tree!("none"),
            ),
            // A parameter named twice is the last argument.
            (
                &["x", "x"],
                "v: \"{{ x }}\"\n",
                "partial('P', 'a', 'b')",
                crate::tree!("b"),
            ),
        ];
        for (params, body, call, expected) in cases {
            let case = Case::new(&[("P", params, body)], &format!("p: \"{{{{ {call} }}}}\"\n"));
            assert_eq!(
                case.run(&crate::tree!({})),
                Some(crate::tree!({"p": {"v": expected}})),
                "{call}"
            );
        }
    }

    #[test]
    fn every_argument_is_evaluated_as_written_even_where_the_body_skips_it() {
        // Written, the failing argument fails the template though `$if` leaves it unread.
        let case = Case::new(
            &[("Cond", &["flag", "c"], "$if: \"{{ flag }}\"\nv: \"{{ c }}\"\n")],
            "c: \"{{ partial('Cond', r.Flag, r.T + 1) }}\"\n",
        );
        let record = crate::tree!({"Flag": false, "T": "text"});
        let inlined = template::eval(&case.template, &Scope::root("r", &record));
        let written = template::eval(&case.new_written(), &Scope::root("r", &record));
        assert!(written.is_err(), "{written:?}");
        assert!(inlined.is_err(), "{inlined:?}");
    }

    #[test]
    fn a_vaccine_is_unknown_only_where_the_record_names_no_product() {
        let registry = crate::mapping::Registry::load(&crate::mapping::Source::Embedded).unwrap();
        let (template, problems) = compiled_with("v: \"{{ partial('VaccineCode', r.Coding, r.Text) }}\"\n", &["r"]);
        assert!(problems.is_empty(), "{problems:?}");
        let case = Case::linked(registry.partials.clone(), template);
        let unknown = crate::tree!({"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK",
                             "display": "Unknown"});
        assert_eq!(
            case.run(&crate::tree!({"Text": "Flu"})),
            Some(crate::tree!({"v": {"coding": [unknown], "text": "Flu"}}))
        );
        let product = crate::tree!({"system": "https://dmd.nhs.uk", "code": "39116211000001106"});
        assert_eq!(
            case.run(&crate::tree!({"Coding": product, "Text": "Flu"})),
            Some(crate::tree!({"v": {"coding": [product], "text": "Flu"}}))
        );
    }

    #[test]
    fn an_expression_only_the_engine_runs_keeps_the_partial() {
        let case = Case::new(
            &[("Upper", &["x"], "v: \"{{ x | upper }}\"\n")],
            "u: \"{{ partial('Upper', r.X) }}\"\n",
        );
        assert_eq!(
            case.run(&crate::tree!({"X": "a"})),
            Some(crate::tree!({"u": {"v": "A"}}))
        );
        assert!(!case.inlined());
    }
}
