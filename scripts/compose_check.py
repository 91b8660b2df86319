#!/usr/bin/env python3
"""Validates a Compose file against the Compose specification's JSON schema, then checks the
references the schema cannot: every depends_on names a service, every named volume a
service mounts is declared, every service has an image or a build, and every ${VAR} has a
default (so `docker compose up` works with no .env file).
Usage: compose_check.py SCHEMA.json docker-compose.yml
"""

import json
import re
import sys

import jsonschema
import yaml


def problems_in(doc):
    services = doc.get("services", {})
    volumes = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        if "image" not in svc and "build" not in svc:
            yield f"service {name} has neither image nor build"
        deps = svc.get("depends_on", {})
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in services:
                yield f"service {name} depends on unknown service {dep}"
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source", "")
            if source and not source.startswith((".", "/", "~")) and source not in volumes:
                yield f"service {name} mounts undeclared volume {source}"


def unset_variables(text):
    for match in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}", text):
        if not match.group(2):
            yield f"${{{match.group(1)}}} has no default"


def main(schema_path, compose_path):
    schema = json.load(open(schema_path))
    text = open(compose_path).read()
    doc = yaml.safe_load(text)
    # The schema names draft 2019-09 in a form jsonschema does not look up by itself.
    validator = jsonschema.Draft201909Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]
    errors += list(problems_in(doc)) + list(unset_variables(text))
    for e in errors:
        print(f"{compose_path}: {e}")
    if errors:
        return 1
    print(f"{compose_path}: valid ({len(doc['services'])} services)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
