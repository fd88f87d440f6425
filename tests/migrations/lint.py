#!/usr/bin/env python3
"""Guards the rules of docs/migrations.md for every migration numbered above
034 (028-030 shipped before the rules were enforced and are never edited):

  - a CHECK or FOREIGN KEY constraint added to an existing table
    (ALTER TABLE ... ADD ...) carries NOT VALID: validating it scans the
    table under the ALTER's ACCESS EXCLUSIVE lock;
  - a constraint is not validated in the file that added it (the VALIDATE
    would then run in the same transaction, under that same lock): it is
    validated in a later migration;
  - no CREATE INDEX CONCURRENTLY (payctl migrate runs a file in one
    transaction, where it cannot run).

Usage: lint.py MIGRATIONS_DIR. Before the directory it checks itself on
hand-made files (each rule must catch its bad example and pass the good
one), so the guard cannot silently stop guarding. Exit 0 when clean."""
import os
import re
import sys
import tempfile

FIRST_CHECKED = 35  # 001-034 are released; 028-030 predate these rules


def statements(sql):
    """The file's statements without comments, whitespace collapsed (a DO
    block's dynamic SQL stays inside its statement's text)."""
    sql = re.sub(r"--[^\n]*", " ", sql)
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)
    for s in sql.split(";"):
        s = " ".join(s.split())
        if s:
            yield s


def problems(name, sql):
    found, added, validated = [], set(), set()
    for s in statements(sql):
        u = s.upper()
        if re.search(r"\bCREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY\b", u):
            found.append("%s: CREATE INDEX CONCURRENTLY cannot run in payctl migrate's "
                         "transaction (docs/migrations.md, Indexes)" % name)
        if not re.search(r"\bALTER\s+TABLE\b", u):
            continue
        added.update(m.lower() for m in re.findall(r"\bADD\s+CONSTRAINT\s+(\w+)", s, re.I))
        validated.update(m.lower() for m in re.findall(r"\bVALIDATE\s+CONSTRAINT\s+(\w+)", s, re.I))
        if re.search(r"\bADD\b", u) and re.search(r"\bCHECK\s*\(|\bFOREIGN\s+KEY\b|\bREFERENCES\b", u) \
                and "NOT VALID" not in u:
            found.append("%s: a CHECK or FOREIGN KEY added without NOT VALID: %.120s" % (name, s))
    for c in sorted(added & validated):
        found.append("%s: constraint %s is validated in the file that adds it "
                     "(validate it in a later migration)" % (name, c))
    return found


def lint(directory):
    found = []
    for name in sorted(os.listdir(directory)):
        m = re.match(r"(\d+)_.*\.sql$", name)
        if not m or int(m.group(1)) < FIRST_CHECKED:
            continue
        with open(os.path.join(directory, name)) as f:
            found += problems(name, f.read())
    return found


SELF_TEST = [  # (file, sql, expected number of problems)
    ("035_ok.sql", "SET LOCAL lock_timeout = '5s';\n-- CHECK (x) in a comment\n"
     "ALTER TABLE t ADD CONSTRAINT t_pos CHECK (x > 0) NOT VALID;\n"
     "ALTER TABLE t ADD CONSTRAINT t_fk FOREIGN KEY (y) REFERENCES u (id) NOT VALID;\n"
     "ALTER TABLE t VALIDATE CONSTRAINT t_old;\nCREATE TABLE n (a int CHECK (a > 0), "
     "b int REFERENCES u (id));\nCREATE INDEX t_by_x ON t (x);", 0),
    ("036_check.sql", "ALTER TABLE t ADD CONSTRAINT t_pos CHECK (x > 0);", 1),
    ("037_fk.sql", "alter table t\n  add constraint t_fk foreign key (y) references u (id);", 1),
    ("038_same_file.sql", "ALTER TABLE t ADD CONSTRAINT t_pos CHECK (x > 0) NOT VALID;\n"
     "ALTER TABLE t VALIDATE CONSTRAINT t_pos;", 1),
    ("039_concurrently.sql", "CREATE INDEX CONCURRENTLY t_by_x ON t (x);", 1),
    ("040_column.sql", "ALTER TABLE t ADD COLUMN z int REFERENCES u (id);", 1),
    ("034_released.sql", "ALTER TABLE t ADD CONSTRAINT t_pos CHECK (x > 0);", 0),
]


def self_test():
    ok = True
    with tempfile.TemporaryDirectory() as d:
        for name, sql, want in SELF_TEST:
            got = problems(name, sql) if int(name[:3]) >= FIRST_CHECKED else []
            if len(got) != want:
                print("not ok - self-test %s: expected %d problem(s), got %s" % (name, want, got))
                ok = False
            with open(os.path.join(d, name), "w") as f:
                f.write(sql)
        total = sum(w for _, _, w in SELF_TEST)
        if len(lint(d)) != total:
            print("not ok - self-test: the directory scan found %d, expected %d"
                  % (len(lint(d)), total))
            ok = False
    return ok


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: lint.py MIGRATIONS_DIR")
    if not self_test():
        sys.exit(1)
    print("ok - the lint catches each bad example and passes the good one")
    found = lint(sys.argv[1])
    for p in found:
        print("not ok - " + p)
    if found:
        print("see docs/migrations.md")
        sys.exit(1)
    print("ok - migrations from %03d follow docs/migrations.md" % FIRST_CHECKED)


if __name__ == "__main__":
    main()
