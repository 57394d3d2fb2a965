"""setuptools reads setup.cfg; this adds one build step: the translation catalogues
(``portal/translations/*/LC_MESSAGES/*.po``) are compiled to ``.mo`` files in the build,
so ``pip install .`` ships every language. The ``.mo`` files are not kept in git; in a
development checkout (an editable install) ``make`` compiles them in place."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithCatalogues(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po in sorted(Path("portal/translations").glob("*/LC_MESSAGES/*.po")):
            with po.open("rb") as source:
                catalog = read_po(source)
            target = Path(self.build_lib) / po.with_suffix(".mo")
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                write_mo(out, catalog)


setup(cmdclass={"build_py": BuildWithCatalogues})
