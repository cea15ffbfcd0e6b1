-- A refresh token retired by rotation (its successor was issued) is told apart from one
-- revoked for any other reason (logout, logout-all, the user's revocation): only a rotated
-- token presented again is a sign that it was copied, and only that revokes its family
-- and raises the alarm. Tokens retired before this migration count as not rotated.
ALTER TABLE refresh_token ADD COLUMN rotated boolean NOT NULL DEFAULT false;
