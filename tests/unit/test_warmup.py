"""Which requests warm a new preview up (orchestrator.core.warmup: pure)."""

from orchestrator.core.warmup import entry_modules, optimized_imports, warm_up

VITE_PAGE = """<!doctype html>
<html><head>
<script type="module" src="/@vite/client"></script>
<script type="module">import RefreshRuntime from "/@react-refresh"</script>
</head><body><div id="root"></div>
<script type="module" src="/src/main.tsx"></script>
<script src="./legacy.js"></script>
<script src='./src/other.ts' type='module'></script>
<script type="module" src="https://cdn.example.com/x.js"></script>
</body></html>"""

MAIN_TSX = """import jsxDev from "/node_modules/.vite/deps/react_jsx-dev-runtime.js?v=5c1a";
import { StrictMode } from "/node_modules/.vite/deps/react.js?v=5c1a";
import __vite__cjsImport2_reactDom_client from "/node_modules/.vite/deps/react-dom_client.js?v=5c1a";
import "/src/index.css";
import App from "/src/App.tsx";
import { StrictMode as Again } from "/node_modules/.vite/deps/react.js?v=5c1a";
"""


def test_the_pages_own_module_scripts_are_its_entries() -> None:
    assert entry_modules(VITE_PAGE) == ["/src/main.tsx", "/src/other.ts"]
    assert entry_modules("<h1>no scripts</h1>") == []


def test_the_optimized_dependencies_a_module_imports() -> None:
    assert optimized_imports(MAIN_TSX) == [
        "/node_modules/.vite/deps/react_jsx-dev-runtime.js?v=5c1a",
        "/node_modules/.vite/deps/react.js?v=5c1a",
        "/node_modules/.vite/deps/react-dom_client.js?v=5c1a",
    ]


def test_warm_up_requests_each_entry_then_its_dependencies() -> None:
    asked: list[str] = []

    def get(path: str) -> str | None:
        asked.append(path)
        return MAIN_TSX if path == "/src/main.tsx" else None

    assert warm_up(get, VITE_PAGE, budget_seconds=10) == asked
    assert asked == [
        "/src/main.tsx",
        "/node_modules/.vite/deps/react_jsx-dev-runtime.js?v=5c1a",
        "/node_modules/.vite/deps/react.js?v=5c1a",
        "/node_modules/.vite/deps/react-dom_client.js?v=5c1a",
        "/src/other.ts",
    ]


def test_no_budget_no_requests() -> None:
    assert warm_up(lambda path: None, VITE_PAGE, budget_seconds=-1) == []
