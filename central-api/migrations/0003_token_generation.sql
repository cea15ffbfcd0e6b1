-- central-api v3: access-token revocation.
--
-- Every access token carries the `token_generation` of its user at the time it was
-- issued; a token of an older generation is refused (src/auth.rs, src/revocation.rs).
-- The generation rises whenever what a token vouches for changes: the role, the patrol,
-- the disabled flag, the password, and on an explicit "log out everywhere"
-- (`token_generation = token_generation + 1`). Triggers do it, not the handlers, so a
-- change made in SQL by hand (an operator disabled with psql at 3 a.m.) or by a cascade
-- (a patrol deleted: `patrol_id` set to NULL) revokes the tokens too.
--
-- When the generation rises, the user's refresh tokens are revoked and every instance is
-- told on channel `central_api_auth` (payload: the user id) when the change commits; a
-- deleted user is announced the same way (the refresh tokens go with the row).
--
-- Anything that rewrites `password_hash` (even to a new hash of the same password) logs
-- the user out everywhere: a future rehash-on-login must not touch it casually.

ALTER TABLE app_user ADD COLUMN token_generation bigint NOT NULL DEFAULT 0;

CREATE FUNCTION app_user_bump_token_generation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.role IS DISTINCT FROM OLD.role
        OR NEW.patrol_id IS DISTINCT FROM OLD.patrol_id
        OR NEW.disabled IS DISTINCT FROM OLD.disabled
        OR NEW.password_hash IS DISTINCT FROM OLD.password_hash
    THEN
        NEW.token_generation := greatest(NEW.token_generation, OLD.token_generation + 1);
    END IF;
    -- Never backwards: an older generation would bring revoked tokens back to life.
    NEW.token_generation := greatest(NEW.token_generation, OLD.token_generation);
    RETURN NEW;
END
$$;

CREATE TRIGGER app_user_bump_token_generation
    BEFORE UPDATE ON app_user
    FOR EACH ROW EXECUTE FUNCTION app_user_bump_token_generation();

CREATE FUNCTION app_user_tokens_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('central_api_auth', OLD.id::text);
    ELSIF NEW.token_generation <> OLD.token_generation THEN
        -- A statement of its own, so in READ COMMITTED it sees a refresh token that a
        -- concurrent login or refresh committed while this update waited for the row
        -- (they lock the user row first: src/routes/auth.rs).
        UPDATE refresh_token SET revoked_at = now()
            WHERE user_id = NEW.id AND revoked_at IS NULL;
        PERFORM pg_notify('central_api_auth', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER app_user_tokens_revoked
    AFTER UPDATE OR DELETE ON app_user
    FOR EACH ROW EXECUTE FUNCTION app_user_tokens_revoked();
