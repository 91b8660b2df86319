//! The places a tenant can be: the 50 states, the District of Columbia and the five
//! inhabited territories. A tenant is named by its slug; its postal code is accepted too.

use std::fmt;

use utoipa::{
    openapi::{
        schema::{ObjectBuilder, Type},
        RefOr, Schema,
    },
    PartialSchema, ToSchema,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StateInfo {
    pub slug: &'static str,
    pub postal_code: &'static str,
    pub name: &'static str,
}

macro_rules! states {
    ($(($slug:literal, $code:literal, $name:literal)),* $(,)?) => {
        pub static STATES: &[StateInfo] = &[
            $(StateInfo { slug: $slug, postal_code: $code, name: $name }),*
        ];
    };
}

states![
    ("alabama", "AL", "Alabama"),
    ("alaska", "AK", "Alaska"),
    ("arizona", "AZ", "Arizona"),
    ("arkansas", "AR", "Arkansas"),
    ("california", "CA", "California"),
    ("colorado", "CO", "Colorado"),
    ("connecticut", "CT", "Connecticut"),
    ("delaware", "DE", "Delaware"),
    ("florida", "FL", "Florida"),
    ("georgia", "GA", "Georgia"),
    ("hawaii", "HI", "Hawaii"),
    ("idaho", "ID", "Idaho"),
    ("illinois", "IL", "Illinois"),
    ("indiana", "IN", "Indiana"),
    ("iowa", "IA", "Iowa"),
    ("kansas", "KS", "Kansas"),
    ("kentucky", "KY", "Kentucky"),
    ("louisiana", "LA", "Louisiana"),
    ("maine", "ME", "Maine"),
    ("maryland", "MD", "Maryland"),
    ("massachusetts", "MA", "Massachusetts"),
    ("michigan", "MI", "Michigan"),
    ("minnesota", "MN", "Minnesota"),
    ("mississippi", "MS", "Mississippi"),
    ("missouri", "MO", "Missouri"),
    ("montana", "MT", "Montana"),
    ("nebraska", "NE", "Nebraska"),
    ("nevada", "NV", "Nevada"),
    ("new-hampshire", "NH", "New Hampshire"),
    ("new-jersey", "NJ", "New Jersey"),
    ("new-mexico", "NM", "New Mexico"),
    ("new-york", "NY", "New York"),
    ("north-carolina", "NC", "North Carolina"),
    ("north-dakota", "ND", "North Dakota"),
    ("ohio", "OH", "Ohio"),
    ("oklahoma", "OK", "Oklahoma"),
    ("oregon", "OR", "Oregon"),
    ("pennsylvania", "PA", "Pennsylvania"),
    ("rhode-island", "RI", "Rhode Island"),
    ("south-carolina", "SC", "South Carolina"),
    ("south-dakota", "SD", "South Dakota"),
    ("tennessee", "TN", "Tennessee"),
    ("texas", "TX", "Texas"),
    ("utah", "UT", "Utah"),
    ("vermont", "VT", "Vermont"),
    ("virginia", "VA", "Virginia"),
    ("washington", "WA", "Washington"),
    ("west-virginia", "WV", "West Virginia"),
    ("wisconsin", "WI", "Wisconsin"),
    ("wyoming", "WY", "Wyoming"),
    ("district-of-columbia", "DC", "District of Columbia"),
    ("american-samoa", "AS", "American Samoa"),
    ("guam", "GU", "Guam"),
    ("northern-mariana-islands", "MP", "Northern Mariana Islands"),
    ("puerto-rico", "PR", "Puerto Rico"),
    ("us-virgin-islands", "VI", "U.S. Virgin Islands"),
];

/// A valid tenant name. It can only be obtained by parsing, so holding one proves the
/// name is one of [`STATES`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateSlug(&'static StateInfo);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{shown}` is not a US state, DC or inhabited territory: use its slug (e.g. `california`, `new-york`, `district-of-columbia`) or two-letter postal code (e.g. `CA`, `ny`)")]
pub struct UnknownState {
    shown: String,
}

impl StateSlug {
    /// Accepts a slug or a postal code, in any letter case.
    pub fn parse(input: &str) -> Result<Self, UnknownState> {
        let wanted = input.trim();
        STATES
            .iter()
            .find(|s| {
                s.slug.eq_ignore_ascii_case(wanted) || s.postal_code.eq_ignore_ascii_case(wanted)
            })
            .map(StateSlug)
            .ok_or_else(|| UnknownState {
                shown: shorten(input),
            })
    }

    /// Accepts exactly the spellings the API documents: the slug, or the postal code in
    /// upper or lower case. What a person types is for [`StateSlug::parse`]; a request is
    /// held to its contract.
    pub fn from_api(input: &str) -> Result<Self, UnknownState> {
        STATES
            .iter()
            .find(|s| accepts(s, input))
            .map(StateSlug)
            .ok_or_else(|| UnknownState {
                shown: shorten(input),
            })
    }

    pub fn all() -> impl Iterator<Item = StateSlug> {
        STATES.iter().map(StateSlug)
    }

    pub fn as_str(&self) -> &'static str {
        self.0.slug
    }

    pub fn postal_code(&self) -> &'static str {
        self.0.postal_code
    }

    pub fn official_name(&self) -> &'static str {
        self.0.name
    }
}

fn accepts(state: &StateInfo, input: &str) -> bool {
    input == state.slug
        || input == state.postal_code
        || (input.bytes().all(|b| b.is_ascii_lowercase())
            && input.eq_ignore_ascii_case(state.postal_code))
}

fn api_spellings(state: &StateInfo) -> [String; 3] {
    [
        state.slug.to_owned(),
        state.postal_code.to_owned(),
        state.postal_code.to_ascii_lowercase(),
    ]
}

/// The enum of every spelling [`StateSlug::from_api`] accepts, so a client generated from
/// the document knows the 56 names.
impl PartialSchema for StateSlug {
    fn schema() -> RefOr<Schema> {
        let spellings: Vec<String> = STATES.iter().flat_map(api_spellings).collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(spellings))
            .description(Some(
                "A US state, DC or inhabited territory: its slug (`new-york`) or its two-letter \
                 postal code in upper or lower case (`NY`, `ny`). Answers always use the slug.",
            ))
            .examples(["new-york"])
            .into()
    }
}

impl ToSchema for StateSlug {
    fn name() -> std::borrow::Cow<'static, str> {
        "StateName".into()
    }
}

/// Error messages echo what was sent, but never an unbounded amount of it.
fn shorten(input: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = input
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX)
        .collect();
    if input.chars().count() > MAX {
        out.push('…');
    }
    out
}

impl fmt::Display for StateSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for StateSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateSlug({})", self.as_str())
    }
}

impl std::str::FromStr for StateSlug {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_fifty_six_places_with_unique_slugs_and_codes() {
        assert_eq!(STATES.len(), 56);
        let mut slugs: Vec<_> = STATES.iter().map(|s| s.slug).collect();
        let mut codes: Vec<_> = STATES.iter().map(|s| s.postal_code).collect();
        slugs.sort();
        slugs.dedup();
        codes.sort();
        codes.dedup();
        assert_eq!((slugs.len(), codes.len()), (56, 56));
    }

    #[test]
    fn postal_codes_and_slugs_parse_in_any_case() {
        assert_eq!(StateSlug::parse("CA").unwrap().as_str(), "california");
        assert_eq!(StateSlug::parse("ny").unwrap().as_str(), "new-york");
        assert_eq!(StateSlug::parse("New-York").unwrap().as_str(), "new-york");
        assert_eq!(
            StateSlug::parse("dc").unwrap().as_str(),
            "district-of-columbia"
        );
    }

    #[test]
    fn the_api_takes_slugs_and_postal_codes_exactly_as_documented() {
        assert_eq!(
            StateSlug::from_api("new-york").unwrap().as_str(),
            "new-york"
        );
        assert_eq!(StateSlug::from_api("NY").unwrap().as_str(), "new-york");
        assert_eq!(
            StateSlug::from_api("dc").unwrap().as_str(),
            "district-of-columbia"
        );
        for loose in ["New-York", " ohio", "ohio ", "Ny", "OHIO"] {
            assert!(StateSlug::from_api(loose).is_err(), "{loose:?}");
        }
        let schema = serde_json::to_value(StateSlug::schema()).unwrap();
        let spellings = schema["enum"].as_array().unwrap();
        assert_eq!(spellings.len(), 3 * 56);
        for spelling in spellings {
            assert!(StateSlug::from_api(spelling.as_str().unwrap()).is_ok());
        }
    }

    #[test]
    fn unknown_names_say_what_is_allowed_without_echoing_everything() {
        let err = StateSlug::parse(&"x".repeat(5000)).unwrap_err().to_string();
        assert!(err.contains("postal code"));
        assert!(err.len() < 300);
        assert!(StateSlug::parse("narnia").is_err());
        assert!(StateSlug::parse("").is_err());
    }
}
