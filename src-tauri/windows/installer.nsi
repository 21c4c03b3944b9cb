; The Windows installer of the Kefu desktop app (scripts/package-windows
; builds it with Debian's makensis). A per-user install, like Tauri's NSIS
; default (`installMode: currentUser`): no administrator rights, the app in
; %LOCALAPPDATA%\Programs\Kefu, its data in %APPDATA%\app.kefu.desktop
; (kept on uninstall unless the user ticks the box), a Start menu entry, an
; entry in "Apps & features".
;
; WebView2: Windows 10 (since 2021 updates) and 11 carry the Evergreen
; runtime. When it is missing, the installer says so and, with the user's
; consent, opens Microsoft's download page of the Evergreen bootstrapper;
; nothing is downloaded while building or installing (see docs/DESKTOP.md).
;
; Defined by the caller: VERSION, EXE (kefu-desktop.exe), LOADER
; (WebView2Loader.dll), ICON, OUTFILE.

Unicode true
SetCompressor /SOLID lzma
RequestExecutionLevel user
Target amd64-unicode

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "x64.nsh"

!define NAME "Kefu"
!define IDENTIFIER "app.kefu.desktop"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${IDENTIFIER}"
!define WEBVIEW2_GUID "{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}"
!define WEBVIEW2_PAGE "https://developer.microsoft.com/microsoft-edge/webview2/"

Name "${NAME}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\${NAME}"
InstallDirRegKey HKCU "Software\${IDENTIFIER}" "InstallDir"
VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${NAME}"
VIAddVersionKey "FileDescription" "${NAME} installer"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "LegalCopyright" "Kefu contributors, AGPL-3.0-only"

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\kefu-desktop.exe"

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_COMPONENTS
!insertmacro MUI_UNPAGE_INSTFILES

!insertmacro MUI_LANGUAGE "SimpChinese"
!insertmacro MUI_LANGUAGE "English"

LangString WebView2Missing ${LANG_ENGLISH} "Kefu shows its window with Microsoft Edge WebView2, which this PC does not have yet.$\r$\n$\r$\nOpen Microsoft's WebView2 download page now? (Install the Evergreen runtime, then start Kefu.)"
LangString WebView2Missing ${LANG_SIMPCHINESE} "客服需要 Microsoft Edge WebView2 来显示窗口，这台电脑还没有安装。$\r$\n$\r$\n现在打开微软的 WebView2 下载页面吗？（安装 Evergreen 运行时后再启动客服。）"
LangString KeepData ${LANG_ENGLISH} "Also delete the chats and settings (%APPDATA%\${IDENTIFIER})"
LangString KeepData ${LANG_SIMPCHINESE} "同时删除聊天记录和设置（%APPDATA%\${IDENTIFIER}）"

Function .onInit
    ${IfNot} ${RunningX64}
        MessageBox MB_ICONSTOP "Kefu needs 64-bit Windows." /SD IDOK
        Abort
    ${EndIf}
    SetRegView 64
FunctionEnd

; The Evergreen runtime registers its version ("pv") per machine or per user.
Function HasWebView2
    ReadRegStr $0 HKLM "SOFTWARE\WOW6432Node\Microsoft\EdgeUpdate\Clients\${WEBVIEW2_GUID}" "pv"
    ${If} $0 == ""
        ReadRegStr $0 HKCU "Software\Microsoft\EdgeUpdate\Clients\${WEBVIEW2_GUID}" "pv"
    ${EndIf}
    ${If} $0 == "0.0.0.0"
        StrCpy $0 ""
    ${EndIf}
FunctionEnd

Section "Kefu" SecMain
    SectionIn RO
    SetOutPath "$INSTDIR"
    ; A running Kefu holds its files: ask it to quit first.
    nsExec::Exec 'taskkill /IM kefu-desktop.exe'
    Sleep 1500
    File "/oname=kefu-desktop.exe" "${EXE}"
    File "/oname=WebView2Loader.dll" "${LOADER}"
    WriteUninstaller "$INSTDIR\uninstall.exe"
    CreateShortcut "$SMPROGRAMS\${NAME}.lnk" "$INSTDIR\kefu-desktop.exe"
    WriteRegStr HKCU "Software\${IDENTIFIER}" "InstallDir" "$INSTDIR"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${NAME}"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "Kefu contributors"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\kefu-desktop.exe"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
    WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
    WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
    Call HasWebView2
    ${If} $0 == ""
        ; A silent install (/S, as IT deploys it) never waits on a dialog.
        MessageBox MB_YESNO|MB_ICONEXCLAMATION "$(WebView2Missing)" /SD IDNO IDNO +2
        ExecShell "open" "${WEBVIEW2_PAGE}"
    ${EndIf}
SectionEnd

Section "un.Kefu" UnSecMain
    SectionIn RO
    nsExec::Exec 'taskkill /IM kefu-desktop.exe'
    Sleep 1500
    Delete "$INSTDIR\kefu-desktop.exe"
    Delete "$INSTDIR\WebView2Loader.dll"
    Delete "$INSTDIR\uninstall.exe"
    RMDir "$INSTDIR"
    Delete "$SMPROGRAMS\${NAME}.lnk"
    ; Start at login (tauri-plugin-autostart) writes this value.
    DeleteRegValue HKCU "Software\Microsoft\Windows\CurrentVersion\Run" "Kefu"
    DeleteRegKey HKCU "${UNINSTALL_KEY}"
    DeleteRegKey HKCU "Software\${IDENTIFIER}"
SectionEnd

Section /o "un.$(KeepData)" UnSecData
    RMDir /r "$APPDATA\${IDENTIFIER}"
    RMDir /r "$LOCALAPPDATA\${IDENTIFIER}"
SectionEnd
