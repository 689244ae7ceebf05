// The usage table: a column's heading button sorts by it (again: the other way), and says so to assistive technology.
"use strict";

(() => {
  const table = document.getElementById("usage");
  if (!table) return;
  const body = table.tBodies[0];
  table.tHead.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-sort]");
    if (!button) return;
    const th = button.closest("th");
    const column = [...th.parentElement.children].indexOf(th);
    const descending = th.getAttribute("aria-sort") !== "descending";
    for (const other of table.tHead.querySelectorAll("th")) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    const value = (row) => row.children[column]?.dataset.value ?? "";
    const compare = button.dataset.sort === "number"
      ? (a, b) => Number(value(a)) - Number(value(b))
      : (a, b) => value(a).localeCompare(value(b));
    const rows = [...body.rows].filter((r) => r.children.length > 1).sort(compare);
    if (descending) rows.reverse();
    body.append(...rows);
  });
})();
