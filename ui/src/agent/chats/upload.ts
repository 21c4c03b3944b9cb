// File upload for the composer: POST /attachments as multipart `file`, with
// progress (which fetch cannot report, hence XMLHttpRequest) and the
// server's error turned into an ApiError like every other request.

import { ApiError } from "../../lib/api";
import type { Attachment } from "../../lib/types";

/** The server's default limit (limits.attachment_bytes): checked here first to fail fast. */
export const MAX_UPLOAD_BYTES = 10 * 1024 * 1024;

/** Files of a paste or drop (the first few), or none. */
export function filesOf(data: DataTransfer | null, max = 5): File[] {
  if (!data) return [];
  return Array.from(data.files ?? []).slice(0, max);
}

export function uploadFile(
  base: string,
  token: string | null,
  file: File,
  onProgress: (fraction: number) => void,
): Promise<Attachment> {
  if (file.size > MAX_UPLOAD_BYTES) {
    return Promise.reject(new ApiError(413, "payload_too_large", "file too large"));
  }
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${base}/api/v1/attachments`);
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "network error"));
    xhr.onload = () => {
      let data: { attachment?: Attachment; error?: { code?: string; message?: string } } | null = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && data?.attachment) resolve(data.attachment);
      else
        reject(
          new ApiError(
            xhr.status,
            data?.error?.code ?? (xhr.status === 413 ? "payload_too_large" : "internal"),
            data?.error?.message ?? `${xhr.status} ${xhr.statusText}`,
          ),
        );
    };
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}
