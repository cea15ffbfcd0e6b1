//! [`text_enum!`]: enums stored as `text` columns (with a `CHECK` listing the same names)
//! and sent as snake_case JSON strings.

/// Declares an enum with `as_str`, `parse`, `ALL`, `Display`, serde (snake_case) and an
/// OpenAPI schema. The names must match the column's `CHECK` constraint.
///
/// ```ignore
/// text_enum! {
///     /// DATEX II severity.
///     pub enum Severity { Unknown = "unknown", Low = "low" }
/// }
/// ```
#[macro_export]
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Parses a value read from the database; an unknown name is an internal error
            /// (the column's CHECK constraint should have prevented it).
            pub fn from_db(s: &str) -> $crate::error::ApiResult<$name> {
                $name::parse(s).ok_or_else(|| {
                    $crate::error::ApiError::internal(anyhow::anyhow!(
                        concat!("unknown ", stringify!($name), " {:?} in the database"),
                        s
                    ))
                })
            }

            /// Parses a comma-separated list from a query parameter (`state=reported,verified`),
            /// naming the parameter on error.
            pub fn parse_list(param: &str, s: &str) -> $crate::error::ApiResult<Vec<&'static str>> {
                s.split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        $name::parse(p.trim()).map($name::as_str).ok_or_else(|| {
                            let names: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                            $crate::error::ApiError::field(
                                format!("query.{param}"),
                                format!("unknown value {:?}; expected one of {}", p.chars().take(40).collect::<String>(), names.join(", ")),
                            )
                        })
                    })
                    .collect()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
