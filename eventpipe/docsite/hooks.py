"""MkDocs hooks (mkdocs.yml ``hooks:``): generate the reference pages, then check every link.

* ``on_files``: adds ``reference/http-api.md`` (from the app's ``GET /v1/openapi.json``) and
  ``reference/cli.md`` (from the argparse parsers), so ``mkdocs build --strict`` validates the
  links to and inside them like any page's.
* ``on_post_build``: checks every link and anchor of the built HTML and of README.md
  (:mod:`eventpipe.docsite.links`), writes the external links to ``site/external-links.txt``
  without fetching them, and fails the build on a broken one.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.eventpipe")


def _project_dir(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config):
    project = str(_project_dir(config))
    if project not in sys.path:  # app.py and the packages are imported from the project, not the venv
        sys.path.insert(0, project)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return config


def on_files(files, config):
    from eventpipe.docsite import reference

    for uri, content in ((reference.HTTP_API_PAGE, reference.openapi_markdown(reference.served_openapi())),
                         (reference.CLI_PAGE, reference.cli_markdown(reference.cli_parser()))):
        files.append(File.generated(config, uri, content=content))
    return files


def on_post_build(config):
    from eventpipe.docsite import links

    project = _project_dir(config)
    site = Path(config.site_dir)
    report = links.check_site(site)
    docs_dir = os.path.relpath(config.docs_dir, project)
    links.check_readme(project / "README.md", project, docs_dir, site, report)
    (site / "external-links.txt").write_text(links.external_listing(report), encoding="utf-8")
    log.info("links: %d internal links and anchors checked in %d pages and README.md; %d external links "
             "listed in external-links.txt (not fetched)", report.checked, report.pages, len(report.external))
    if report.broken:
        raise PluginError("broken links:\n  " + "\n  ".join(report.broken))
