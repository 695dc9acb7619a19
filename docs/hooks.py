"""mkdocs hook of the docs build (tools/build_docs.py): display maths written as `$$...$$` inside a paragraph or a list
item reaches Markdown as inline maths marked with `\\displaystyle{}{}{}`; here it becomes MathJax display maths."""
import re

_MARKED = re.compile(r'<span class="arithmatex">\\\(\\displaystyle\{\}\{\}\{\}\s*(.*?)\\\)</span>', re.S)


def on_page_content(html, **kwargs):
    return _MARKED.sub(lambda m: f'<span class="arithmatex nb-display">\\[{m.group(1)}\\]</span>', html)
