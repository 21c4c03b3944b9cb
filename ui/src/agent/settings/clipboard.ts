// Copy to the clipboard. The async API needs a secure context, and a
// self-hosted server on a LAN is often plain http: there we copy through a
// temporary off-screen textarea, and if even that is refused we select the
// visible text so the agent can press Ctrl+C.

function copyThroughTextarea(text: string): boolean {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.top = "-1000px";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

export async function copyText(text: string, visible?: HTMLInputElement | HTMLTextAreaElement | null): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // Denied: try the older way.
  }
  const previous = document.activeElement as HTMLElement | null;
  const ok = copyThroughTextarea(text);
  previous?.focus();
  if (!ok && visible && visible.type !== "password") {
    visible.focus();
    visible.select();
  }
  return ok;
}
