-- One database, one schema per service, one login role per service that owns its schema
-- and has no privilege at all on the other two. Safe to run again.
-- Used by the native stack, by the compose init and against external servers.
DO $$
DECLARE
    service text;
BEGIN
    FOREACH service IN ARRAY ARRAY['users', 'orders', 'payments'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = service || '_service') THEN
            EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', service || '_service', service || '-dev');
        END IF;
        EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', service, service || '_service');
        EXECUTE format('ALTER ROLE %I SET search_path = %I', service || '_service', service);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', service);
    END LOOP;
END
$$;

-- Nobody but the owners creates objects in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
