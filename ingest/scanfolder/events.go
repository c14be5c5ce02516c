package scanfolder

// evKind is what an inotify event says about a name (see closeWatcher).
type evKind int

const (
	evModified evKind = iota // IN_MODIFY: a writer wrote
	evClosed                 // IN_CLOSE_WRITE: a writer closed it
	evCreated                // IN_CREATE: new while watched, so every write to it is seen
	evGone                   // IN_MOVED_FROM, IN_DELETE: the name no longer holds the file
	evMovedIn                // IN_MOVED_TO: the file arrived by rename (cookie pairs it with its evGone)
)

// closeEvent is one file event from the close watcher. overflow means
// events were lost.
type closeEvent struct {
	rel      string
	kind     evKind
	cookie   uint32
	overflow bool
}
