"""``eventpipe regulations create|list|show|process``: privacy regulations from the command line."""

from __future__ import annotations

import json
import sys

from eventpipe.cli_args import _aws_settings


def _container(args):
    from chalicelib.runtime.container import Container
    return Container(_aws_settings(args))


def cmd_regulations(args) -> int:
    from chalicelib.lake.regulations import MAX_USER_IDS
    from chalicelib.lake.writer_lock import LockHeld
    container = _container(args)
    store = container.regulation_store
    if args.regulations_command == "create":
        ids = list(args.user_ids)
        if args.file:
            with open(args.file, encoding="utf-8") as f:
                ids += [line.strip() for line in f if line.strip()]
        if not 1 <= len(ids) <= MAX_USER_IDS:
            print(f"give 1 to {MAX_USER_IDS} user ids", file=sys.stderr)
            return 2
        reg = store.create(args.app, args.type, ids, {"app_id": args.app, "key_id": "-", "role": "cli"})
        print(json.dumps(reg.public(), indent=2))
    elif args.regulations_command == "list":
        for reg in store.list(args.app):
            print(f"{reg.id}  {reg.app_id:<20} {reg.type:<21} {reg.status:<8} {reg.user_count:>5} id(s)  "
                  f"{json.dumps(reg.results)}")
    elif args.regulations_command == "show":
        reg = store.get(args.id)
        if reg is None:
            print(f"no regulation {args.id}", file=sys.stderr)
            return 1
        print(json.dumps(reg.public(), indent=2))
    else:  # process
        try:
            print(json.dumps(container.deletion_job().run(), indent=2))
        except LockHeld as exc:
            print(f"{exc}", file=sys.stderr)
            return 3
    return 0


def add_parsers(sub) -> None:
    from chalicelib.lake.regulations import TYPES
    p = sub.add_parser("regulations", help="privacy: delete or suppress users' data (create, list, show, process)")
    regs = p.add_subparsers(dest="regulations_command", required=True)
    create = regs.add_parser("create", help="file a regulation for an app's users")
    create.add_argument("--app", required=True)
    create.add_argument("--type", required=True, choices=TYPES)
    create.add_argument("--file", help="a file of user ids, one a line")
    create.add_argument("user_ids", nargs="*")
    listing = regs.add_parser("list", help="regulations, oldest first (counts per store)")
    listing.add_argument("--app")
    show = regs.add_parser("show", help="one regulation")
    show.add_argument("id")
    regs.add_parser("process", help="run the deletion job now (on AWS the process_regulations schedule does)")
    p.set_defaults(func=cmd_regulations)
