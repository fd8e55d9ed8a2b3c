// The shell's own texts, English and German; the browser's preferred language picks.

export const TEXTS = {
  en: {
    skip: 'Skip to content',
    nav: 'Service areas',
    logout: 'Log out',
    signedInAs: 'Signed in as',
    loading: 'Loading…',
    loadingPlugin: (title) => `Loading ${title}…`,
    unavailableTitle: (title) => `${title} is not available right now`,
    unavailable: (title) => `The ${title} part of this site cannot be reached at the moment. The other parts keep working; please try again in a little while.`,
    brokenTitle: (title) => `${title} could not be shown`,
    broken: (title) => `Something went wrong inside the ${title} part of this site. The other parts keep working; reloading the page may help.`,
    outdatedTitle: (title) => `${title} needs an update`,
    outdated: (title, needs, serves) => `This version of the ${title} view needs interface version ${needs.join(', ')}, which the service no longer offers (it offers ${serves.join(', ') || 'none'}). Please try again later, once it is updated.`,
    retry: 'Try again',
    expired: 'Your session has expired. Please sign in again.',
    loggedOut: 'You have been logged out.',
    signInFirst: 'Please sign in first.',
    notFound: 'There is no such page.',
    network: 'The service cannot be reached right now. Please check your connection and try again.',
    unavailableService: 'This service is not available right now. Please try again in a little while.',
    busy: 'The service is busy right now. Please try again in a moment.',
    tooMany: 'Too many attempts. Please wait a while and try again.',
    denied: 'You are not allowed to do this.',
    missing: 'This could not be found.',
    invalid: 'Some of the details are not valid. Please check them and try again.',
    conflict: 'Someone changed this at the same time. Please reload and try again.',
    unexpected: 'Something unexpected went wrong. Please try again.',
  },
  de: {
    skip: 'Zum Inhalt springen',
    nav: 'Bereiche',
    logout: 'Abmelden',
    signedInAs: 'Angemeldet als',
    loading: 'Wird geladen…',
    loadingPlugin: (title) => `${title} wird geladen…`,
    unavailableTitle: (title) => `Der Bereich „${title}“ ist gerade nicht erreichbar`,
    unavailable: (title) => `Der Bereich ${title} ist im Moment nicht erreichbar. Alle anderen Bereiche funktionieren weiter; bitte versuchen Sie es gleich noch einmal.`,
    brokenTitle: (title) => `Der Bereich „${title}“ konnte nicht angezeigt werden`,
    broken: (title) => `Im Bereich ${title} ist ein Fehler aufgetreten. Alle anderen Bereiche funktionieren weiter; Neuladen der Seite kann helfen.`,
    outdatedTitle: (title) => `Die Ansicht „${title}“ muss aktualisiert werden`,
    outdated: (title, needs, serves) => `Diese Version der Ansicht ${title} braucht die Schnittstellenversion ${needs.join(', ')}, die der Dienst nicht mehr anbietet (er bietet ${serves.join(', ') || 'keine'}). Bitte versuchen Sie es später noch einmal.`,
    retry: 'Erneut versuchen',
    expired: 'Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.',
    loggedOut: 'Sie wurden abgemeldet.',
    signInFirst: 'Bitte melden Sie sich zuerst an.',
    notFound: 'Diese Seite gibt es nicht.',
    network: 'Der Dienst ist gerade nicht erreichbar. Bitte prüfen Sie Ihre Verbindung und versuchen Sie es erneut.',
    unavailableService: 'Dieser Dienst ist gerade nicht verfügbar. Bitte versuchen Sie es gleich noch einmal.',
    busy: 'Der Dienst ist gerade ausgelastet. Bitte versuchen Sie es gleich noch einmal.',
    tooMany: 'Zu viele Versuche. Bitte warten Sie eine Weile und versuchen Sie es dann erneut.',
    denied: 'Das dürfen Sie nicht.',
    missing: 'Das wurde nicht gefunden.',
    invalid: 'Einige Angaben sind ungültig. Bitte prüfen Sie sie und versuchen Sie es erneut.',
    conflict: 'Jemand hat das gleichzeitig geändert. Bitte laden Sie neu und versuchen Sie es erneut.',
    unexpected: 'Etwas Unerwartetes ist schiefgegangen. Bitte versuchen Sie es erneut.',
  },
};

/** `de` when the browser prefers German before English, else `en`. */
export function pickLanguage(languages) {
  for (const language of languages || []) {
    const primary = String(language).toLowerCase().split('-')[0];
    if (primary === 'de' || primary === 'en') return primary;
  }
  return 'en';
}
