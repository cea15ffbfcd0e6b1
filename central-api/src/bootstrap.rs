//! `central-api create-admin`: the first admin account, made from the command line (the
//! API lets only admins create admins).

use anyhow::Context;

use crate::audit::Actor;
use crate::auth::{Passwords, Role};
use crate::config::Config;
use crate::error::ApiError;
use crate::routes::users::{NewUser, insert_user};

/// Creates admin `username`; returns its id. Fails when the name is taken or the password
/// is too short, naming the problem.
pub async fn create_admin(
    config: &Config,
    username: &str,
    display_name: &str,
    password: String,
) -> anyhow::Result<i64> {
    let pool = crate::db::pool(config)?;
    let client = pool.get().await.context("connecting to the database")?;
    let pending = crate::migrate::pending(&client)
        .await
        .context("checking the schema")?;
    anyhow::ensure!(
        pending.is_empty(),
        "the database schema is not up to date ({}); run `central-api migrate` first",
        pending.join(", ")
    );
    let passwords = Passwords::new(&config.auth)?;
    let actor = Actor {
        user_id: None,
        role: None,
        request_id: Some("create-admin".to_owned()),
    };
    let new = NewUser {
        username: username.to_owned(),
        password,
        display_name: display_name.to_owned(),
        email: None,
        role: Role::Admin,
        patrol_id: None,
    };
    match insert_user(&client, &passwords, &actor, new).await {
        Ok(user) => Ok(user.id),
        Err(ApiError::Validation(fields)) | Err(ApiError::Conflict { fields, .. }) => {
            let text: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.field, f.message))
                .collect();
            anyhow::bail!("cannot create the admin: {}", text.join("; "))
        }
        Err(e) => Err(anyhow::Error::new(e).context("creating the admin")),
    }
}
