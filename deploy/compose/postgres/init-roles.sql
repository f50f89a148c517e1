-- Development only: mounted into the postgres container's /docker-entrypoint-initdb.d and run once,
-- when the data volume is first created.
--
-- palisade uses two roles (see docs/database.md):
--   palisade_owner  - POSTGRES_USER of the container; owns the schema, runs `palisade migrate`.
--   palisade_server - the LOGIN role the server connects as; a member of palisade_app, which owns
--                     nothing, so row-level security applies to every query it makes.
-- The first migration creates palisade_app too and tolerates it already existing.
CREATE ROLE palisade_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE palisade_server LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
    PASSWORD 'palisade_server' IN ROLE palisade_app;
