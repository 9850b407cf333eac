"""Every relative link in the project's Markdown pages points at an existing file (and heading).

Pages move and get renamed; a link that no longer resolves is found here, not by a reader.
Links to web addresses are not checked (no network in the tests).
"""
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / 'README.md', ROOT / 'bench' / 'README.md', ROOT / 'langmod' / 'README.md']
               + list((ROOT / 'docs').glob('*.md')))
# [text](target) or [text](target "title"); images too. Code spans and blocks are removed first.
LINK = re.compile(r'\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
FENCE = re.compile(r'^(```|~~~).*?^\1', re.M | re.S)
CODE_SPAN = re.compile(r'`[^`\n]*`')
HEADING = re.compile(r'^#{1,6}\s+(.*?)\s*#*\s*$', re.M)


def prose(text):
    return CODE_SPAN.sub('', FENCE.sub('', text))


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize('NFKC', heading).lower()
    text = ''.join(c for c in text if c.isalnum() or c in ' -_')
    return text.replace(' ', '-')


def anchors(path):
    seen, out = {}, set()
    for heading in HEADING.findall(FENCE.sub('', path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else '%s-%d' % (base, n))
    return out


def relative_links(page):
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r'[a-z][a-z0-9+.-]*:', target, re.I):   # http:, https:, mailto:
            continue
        yield target


def test_slug_follows_github():
    assert slug('Counting multiplications, additions and model size') == \
        'counting-multiplications-additions-and-model-size'
    assert slug('`layers.py`') == 'layerspy'
    assert slug('Tables and figures from finished runs (`report`)') == \
        'tables-and-figures-from-finished-runs-report'


def test_the_pages_exist():
    assert (ROOT / 'docs' / 'README.md') in PAGES and len(PAGES) >= 5


def broken_links(page):
    broken = []
    for target in relative_links(page):
        path_part, _, fragment = target.partition('#')
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append('%s (no such file)' % target)
        elif fragment and path.suffix == '.md' and fragment not in anchors(path):
            broken.append('%s (no heading #%s in %s)' % (target, fragment, path.name))
    return broken


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = broken_links(page)
    assert not broken, '%s: broken links: %s' % (page.relative_to(ROOT), '; '.join(broken))


def test_broken_links_are_found(tmp_path):
    (tmp_path / 'other.md').write_text('# Other page\n\n```\n# not a heading\n```\n')
    page = tmp_path / 'page.md'
    page.write_text('# Title\n\n[ok](#title) [ok](other.md#other-page) [gone](missing.md) '
                    '[bad](#nowhere) [bad](other.md#not-a-heading) [web](https://example.org) '
                    '`[code](not-a-link.md)`\n')
    assert broken_links(page) == ['missing.md (no such file)',
                                  '#nowhere (no heading #nowhere in page.md)',
                                  'other.md#not-a-heading (no heading #not-a-heading in other.md)']
