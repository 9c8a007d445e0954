"""The hand-written type stubs (bindings/python/flowbus/_flowbus.pyi) against
the built module: the same classes, members and parameter names, so that an
editor's completion and mypy tell users what the module really takes."""
import ast
import re

import flowbus._flowbus as module
from conftest import SOURCE_DIR

STUB = SOURCE_DIR / "bindings" / "python" / "flowbus" / "_flowbus.pyi"


def stub_classes():
    tree = ast.parse(STUB.read_text())
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members[item.name] = [a.arg for a in item.args.args + item.args.kwonlyargs]
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members[item.target.id] = None
            classes[node.name] = members
    return classes


def runtime_parameters(method):
    """Parameter names from pybind11's signature line, e.g.
    'wait(self: flowbus._flowbus.Subscriber, timeout: Optional[float] = None) -> object'."""
    first = (method.__doc__ or "").strip().splitlines()[0]
    inside = re.match(r"^\w+\((.*)\)\s*->", first)
    assert inside, f"no signature line in {method.__qualname__}'s docstring: {first!r}"
    return re.findall(r"(?:^|, )(\*{0,2}\w+):", inside.group(1))


def test_every_stub_class_and_member_exists_in_the_module():
    for name, members in stub_classes().items():
        assert hasattr(module, name), f"the stub declares {name}, the module has none"
        cls = getattr(module, name)
        if issubclass(cls, BaseException):
            continue  # exception attributes are set per instance
        for member in members:
            if member.startswith("__") and member not in ("__enter__", "__exit__", "__iter__", "__next__"):
                continue
            assert hasattr(cls, member), f"the stub declares {name}.{member}, the module has none"


def test_every_public_member_of_the_module_is_in_the_stub():
    classes = stub_classes()
    for name in dir(module):
        cls = getattr(module, name)
        if name.startswith("_") or not isinstance(cls, type):
            continue
        assert name in classes, f"the module's {name} is missing from the stub"
        if issubclass(cls, BaseException):
            continue  # exception attributes are set per instance
        for member in dir(cls):
            if not member.startswith("_"):
                assert member in classes[name], f"{name}.{member} is missing from the stub"


def test_parameter_names_match():
    for name, members in stub_classes().items():
        cls = getattr(module, name)
        if issubclass(cls, BaseException):
            continue
        for member, stub_params in members.items():
            method = getattr(cls, member, None)
            if stub_params is None or not callable(method) or isinstance(method, property):
                continue
            if type(method).__name__ != "instancemethod" and not hasattr(method, "__doc__"):
                continue
            if member.startswith("__"):
                continue
            doc_line = (method.__doc__ or "").strip().splitlines()[:1]
            if not doc_line or "(" not in doc_line[0]:
                continue  # a property declared as a def in the stub
            assert runtime_parameters(method) == stub_params, \
                f"{name}.{member}: the module takes {runtime_parameters(method)}, the stub says {stub_params}"
